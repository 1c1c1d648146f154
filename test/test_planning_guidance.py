"""Goal guidance: geodesic cost-to-go around walls, and the planner turning toward a doorway."""
from __future__ import annotations

import numpy as np
import pytest

from depth_nodes.planning.distance import VoxelDistanceField
from depth_nodes.planning.guidance import GoalGuidance, guidance_from_occupancy
from depth_nodes.planning.planner import PlannerConfig, PrimitivePlanner
from depth_nodes.planning.primitives import PrimitiveLibraryConfig
from depth_nodes.planning.state import VehicleState

CELL = 0.2
ORIGIN = np.array([-2.0, -6.0])
GOAL = np.array([10.0, 0.0, 1.5])


def wall_with_door(door_y=(3.0, 5.0), x=4.0) -> np.ndarray:
    """(nx, ny) grid over x in [-2, 14), y in [-6, 6): a wall across at ``x`` with one doorway."""
    blocked = np.zeros((70, 60), bool)
    ys = ORIGIN[1] + (np.arange(60) + 0.5) * CELL
    blocked[int((x - ORIGIN[0]) / CELL), ~((ys > door_y[0]) & (ys < door_y[1]))] = True
    return blocked


def test_cost_to_go_leads_through_the_doorway():
    g = GoalGuidance(wall_with_door(), ORIGIN, CELL, GOAL, inflate_m=0.25)
    here = np.array([[2.0, 0.0, 1.5]])
    via_door = np.hypot(4.0 - 2.0, 4.0) + np.hypot(10.0 - 4.0, 4.0)
    assert g.query(here)[0] == pytest.approx(via_door, rel=0.1)
    assert g.query(here)[0] > np.linalg.norm(here[0] - GOAL) + 2.0  # the wall is in the way
    toward_door, toward_wall = g.query(np.array([[2.5, 1.0, 1.5], [2.5, -1.0, 1.5]]))
    assert toward_door < toward_wall
    # beside the goal, and outside the grid: straight line
    assert g.query(GOAL[None])[0] == pytest.approx(0.0, abs=CELL)
    # above the goal the height still counts: a vehicle there is pulled down to it
    assert g.query((GOAL + [0.0, 0.0, 1.2])[None])[0] == pytest.approx(1.2, abs=CELL)
    far = np.array([[50.0, 0.0, 1.5]])
    assert g.query(far)[0] == pytest.approx(40.0)


def test_blocked_and_enclosed_cells_stay_finite_and_grow_away_from_reachable_space():
    blocked = wall_with_door()
    blocked[10:15, 10:15] = True
    blocked[11:14, 11:14] = False  # an enclosed pocket
    g = GoalGuidance(blocked, ORIGIN, CELL, GOAL)
    assert np.all(np.isfinite(g.values))
    pocket = g.values[12, 12]
    assert pocket > g.values[9, 12]  # nearest reachable cell plus the way to it


def test_goal_outside_the_grid_uses_the_nearest_cell_plus_the_remaining_distance():
    g = GoalGuidance(np.zeros((20, 20), bool), [0.0, 0.0], 0.5, [30.0, 5.0, 1.0])
    v = g.query(np.array([[1.0, 5.0, 1.0], [9.0, 5.0, 1.0]]))
    assert v[0] - v[1] == pytest.approx(8.0, abs=0.6)
    assert v[1] == pytest.approx(21.0, abs=0.6)


def test_from_occupancy_pools_voxels_into_cells():
    occ = np.zeros((140, 120, 5), bool)
    occ[60, :, 2] = True  # wall at x = -2 + 6.0 = 4 m, full width
    occ[60, 90:100, :] = False  # doorway y in [3, 4) m
    g = guidance_from_occupancy(occ, [-2.0, -6.0, 1.0], 0.1, GOAL, cell=0.2, inflate_m=0.0)
    assert g.shape == (70, 60) and g.blocked[30].sum() == 55
    assert g.query(np.array([[2.0, 0.0, 1.5]]))[0] > 9.0


@pytest.mark.parametrize("kw,match", [(dict(blocked=np.zeros((0, 3), bool)), "blocked"),
                                      (dict(cell=0.0), "cell"), (dict(inflate_m=-1.0), "inflate_m"),
                                      (dict(goal=[1.0, np.nan, 0.0]), "goal")])
def test_bad_arguments_are_rejected(kw, match):
    args = dict(blocked=np.zeros((5, 5), bool), origin_xy=[0.0, 0.0], cell=0.2, goal=[1.0, 1.0, 1.0])
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        GoalGuidance(**args)


def test_planner_with_guidance_turns_toward_the_doorway():
    # the wall is mapped; straight-line progress heads into it, the guidance turns to the door at y in [3, 5]
    occ = np.zeros((70, 60, 15), bool)
    occ[30, :, :] = True
    occ[30, 45:55, :] = False
    field = VoxelDistanceField(occ, [-2.0, -6.0, 0.0], 0.2)
    g = guidance_from_occupancy(occ[:, :, 5:10], [-2.0, -6.0, 1.0], 0.2, GOAL, cell=0.2, inflate_m=0.25)
    lib = PrimitiveLibraryConfig(n_yaw=13, n_climb=1, speeds=(0.5, 1.0, 2.0), horizon_s=1.5)
    state = VehicleState.at_rest([1.0, 0.0, 1.5], yaw=0.0, stamp=0.0)
    plain = PrimitivePlanner(PlannerConfig(library=lib, require_depth=False)).plan(state, 0.0, GOAL, field)
    guided = PrimitivePlanner(PlannerConfig(library=lib, require_depth=False)).plan(state, 0.0, GOAL, field,
                                                                                 guidance=g)
    assert guided.collision.feasible[guided.index] and not guided.braking
    assert guided.trajectory.pos[-1, 1] > plain.trajectory.pos[-1, 1] + 0.3
    assert guided.candidates.yaw_offset[guided.index] > 0.2
    with pytest.raises(ValueError, match="guidance"):
        PrimitivePlanner(PlannerConfig(library=lib, require_depth=False)).plan(state, 0.0, GOAL, field,
                                                                            guidance=object())


def test_min_gap_keeps_doorways_under_lintels_open_and_blocks_low_gaps():
    # slab z in [0.2, 3.5) at 0.1 m; a wall at x = 4 m with a doorway y in [3, 5) under a lintel from 2.2 m,
    # a table top at 0.7 m (gap below too low, free above) and a shelf whose gap to the ceiling is too low
    vs, z0 = 0.1, 0.2
    occ = np.zeros((140, 120, 33), bool)
    z = z0 + (np.arange(33) + 0.5) * vs
    occ[60, :, :] = True
    occ[60, 90:110, z < 2.2] = False
    occ[30:40, 20:30, np.abs(z - 0.7) < 0.05] = True        # table at x in [1, 2), y in [-4, -3)
    occ[30:40, 60:70, z < 2.8] = True                       # cabinet up to 2.8 m at x in [1, 2), y in [0, 1)
    occ[:, :, z > 3.3] = True                               # ceiling
    old = guidance_from_occupancy(occ, [-2.0, -6.0, z0], vs, GOAL, cell=0.2, inflate_m=0.0)
    g = guidance_from_occupancy(occ, [-2.0, -6.0, z0], vs, GOAL, cell=0.2, inflate_m=0.0, min_gap_m=0.8)
    door, table, cabinet = (g.blocked[30, 45:55], g.blocked[15:20, 10:15], g.blocked[15:20, 30:35])
    assert old.blocked.sum() == old.blocked.size - 1  # the ceiling closes every cell but the goal's
    assert not door.any() and g.blocked[30, :45].all() and g.blocked[30, 55:].all()
    assert not table.any() and cabinet.all()
    # the way through the doorway is open: the cost-to-go is the geodesic through it
    here = np.array([[2.0, 0.0, 1.5]])
    assert g.query(here)[0] == pytest.approx(np.hypot(2.0, 4.0) + np.hypot(6.0, 4.0), rel=0.1)
    with pytest.raises(ValueError, match="min_gap_m"):
        guidance_from_occupancy(occ, [-2.0, -6.0, z0], vs, GOAL, cell=0.2, inflate_m=0.0, min_gap_m=-1.0)
    with pytest.raises(ValueError, match="occupied"):
        guidance_from_occupancy(occ[:, :, 0], [-2.0, -6.0, z0], vs, GOAL, cell=0.2, inflate_m=0.0)


def test_guidance_from_map_reads_the_flight_band_of_a_tsdf_map():
    """A wall with a doorway integrated into a real TSDF map: the cost-to-go leads through the door,
    and a band above the wall's top sees no wall."""
    from depth_nodes.camera import PinholeCamera
    from depth_nodes.mapping.config import TsdfConfig
    from depth_nodes.mapping.synthetic import Box, Scene, look_at
    from depth_nodes.mapping.tsdf import TsdfMap
    from depth_nodes.planning.guidance import guidance_from_map

    # wall across x = 4 (0.2 m thick, 2 m high) from y = -6 to 3 and from 5 to 6: a doorway at y 3..5
    scene = Scene(boxes=[Box((3.9, -6.0, 0.0), (4.1, 3.0, 2.0)), Box((3.9, 5.0, 0.0), (4.1, 6.0, 2.0))])
    cam = PinholeCamera.from_fov(160, 120, 90.0)
    m = TsdfMap(TsdfConfig(voxel_size=0.1))
    for y in (-3.0, 0.0, 3.0):
        T = look_at((0.0, y, 1.0), (4.0, y, 1.0))
        assert m.integrate(scene.render_depth(cam, T), cam, T).accepted
    here = np.array([0.0, 0.0, 1.0])
    g = guidance_from_map(m, here, GOAL, inflate_m=0.25, z_band=(0.2, 1.8), min_gap_m=0.8)
    straight = np.hypot(GOAL[0] - here[0], GOAL[1] - here[1])
    via_door = np.hypot(4.0, 4.0) + np.hypot(6.0, 4.0)
    assert g.query(here[None])[0] == pytest.approx(via_door, rel=0.15)
    above = guidance_from_map(m, here, GOAL, inflate_m=0.25, z_band=(2.3, 3.5), min_gap_m=0.8)
    assert above.query(here[None])[0] == pytest.approx(straight, rel=0.05)
    with pytest.raises(ValueError, match="z_band"):
        guidance_from_map(m, here, GOAL, 0.25, (1.0, 1.0), 0.8)

"""Procedural worlds: determinism, validation, ground-truth queries, scripted route and vehicle."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest

from depth_nodes.sim.materials import Material
from depth_nodes.sim.route import plan_route, route_trajectory
from depth_nodes.sim.vehicle import Vehicle
from depth_nodes.sim.world import World, WorldSpec, build_world
from depth_nodes.trajectory import Trajectory


@pytest.mark.parametrize("kind", ["forest", "urban", "indoor"])
def test_same_seed_same_bytes_different_seed_different_world(kind):
    a = build_world(WorldSpec(kind, 3, "medium"))
    b = build_world(WorldSpec(kind, 3, "medium"))
    c = build_world(WorldSpec(kind, 4, "medium"))
    assert a.vertices.tobytes() == b.vertices.tobytes()
    assert a.triangles.tobytes() == b.triangles.tobytes()
    assert a.materials.tobytes() == b.materials.tobytes()
    assert a.vertices.shape != c.vertices.shape or a.vertices.tobytes() != c.vertices.tobytes()


@pytest.mark.parametrize("kind", ["forest", "urban", "indoor"])
def test_start_goal_clear_and_ordered(kind):
    w = build_world(WorldSpec(kind, 1, "dense"))
    d = w.distance(np.stack([w.start, w.goal]))
    assert np.all(d >= 1.0), d
    assert abs(w.start[0]) < 1.0 and w.goal[0] > w.spec.extent[0] * 0.8
    assert 1.0 < w.start[2] - float(w.ground_z(0.0, 0.0)) < 2.0


def test_forest_density_scales_tree_count():
    counts = []
    for d in ("sparse", "medium", "dense"):
        w = build_world(WorldSpec("forest", 2, d))
        counts.append(int(np.sum(w.materials == Material.BARK)))
    assert counts[0] < counts[1] < counts[2]
    # medium ~ 6 trees / 100 m^2 -> trunk triangle count close to 2.5x sparse ~ 2/100 m^2
    assert 2.0 < counts[1] / counts[0] < 4.5


def test_spec_round_trip_and_validation():
    s = WorldSpec("urban", 5, "dense", (50, 20))
    assert WorldSpec.from_dict(s.to_dict()) == s
    assert WorldSpec.from_dict(s.to_json()) == s
    assert s.density == 3.0 and s.extent == (50.0, 20.0)
    with pytest.raises(ValueError, match="kind"):
        WorldSpec("moon")
    with pytest.raises(ValueError, match="density"):
        WorldSpec("forest", 0, "huge")
    with pytest.raises(ValueError, match="extent"):
        WorldSpec("forest", 0, 6.0, (1e6, 10))
    with pytest.raises(ValueError, match="seed"):
        WorldSpec("forest", -1)
    with pytest.raises(ValueError, match="unknown"):
        WorldSpec.from_dict({"kind": "forest", "colour": 1})


def test_raycast_and_distance_on_plane():
    plane = o3d.geometry.TriangleMesh.create_box(20, 20, 0.01).translate((-10, -10, -0.01))
    w = World.from_mesh(plane, Material.GROUND)
    o = np.array([[0.0, 0.0, 2.0], [1.0, 1.0, 3.0], [0.0, 0.0, 1.0]])
    d = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, 1.0]])
    hits = w.raycast(o, d)
    np.testing.assert_allclose(hits.t_hit[:2], [2.0, 1.5], atol=1e-5)
    assert np.isinf(hits.t_hit[2]) and hits.material[2] == Material.MISS
    assert np.all(hits.material[:2] == Material.GROUND)
    np.testing.assert_allclose(hits.normals[:2], [[0, 0, 1], [0, 0, 1]], atol=1e-6)  # face the rays
    np.testing.assert_allclose(w.distance([[3.0, 2.0, 0.7]]), [0.7], atol=1e-5)
    packed = np.concatenate([o, d], axis=1)
    np.testing.assert_array_equal(w.hit_distance(packed), w.cast_packed(packed).t_hit)   # depth-only query
    with pytest.raises(ValueError, match="rays must be"):
        w.hit_distance(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="origins"):
        w.raycast(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        w.raycast(np.zeros((1, 3)), np.array([[np.nan, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="finite"):
        w.distance([[np.inf, 0.0, 0.0]])


def test_world_rejects_bad_mesh():
    with pytest.raises(ValueError, match="triangles"):
        World(np.zeros((3, 3)), np.array([[0, 1, 5]]), np.zeros(1), [0, 0, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="vertices"):
        World(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), np.zeros(1), [0, 0, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="backdrop"):
        World(np.eye(3), np.array([[0, 1, 2]]), np.zeros(1), [0, 0, 0], [1, 0, 0], backdrop_triangles=1)


@pytest.mark.parametrize("kind", ["forest", "urban"])
def test_outdoor_ground_reaches_the_horizon_without_cracks(kind):
    w = build_world(WorldSpec(kind, 3, "medium"))
    length, width = w.spec.extent
    assert w.backdrop_triangles > 0
    back = w.triangles[len(w.triangles) - w.backdrop_triangles:]
    assert np.all(w.vertices[back.ravel(), 2] < 2.0)  # terrain only
    # bounds describe the world's area, not the distant terrain
    lo, hi = w.bounds
    assert lo[0] > -30.0 and hi[0] < length + 30.0 and hi[1] < width / 2 + 30.0
    # from the goal, a ray 1 degree under the horizon meets something in every direction;
    # straight ahead (past the area's end) that is the distant ground, tens of metres away
    e = np.radians(-1.0)
    for yaw in np.radians([0.0, 90.0, 180.0, 270.0]):
        d = np.array([[np.cos(e) * np.cos(yaw), np.cos(e) * np.sin(yaw), np.sin(e)]])
        hit = w.raycast(w.goal[None], d)
        assert hit.hit[0] and hit.t_hit[0] < 250.0, (kind, yaw, hit.t_hit[0])
    hit = w.raycast(w.goal[None], np.array([[np.cos(e), 0.0, np.sin(e)]]))
    ground = Material.GROUND if kind == "forest" else Material.CONCRETE
    assert hit.t_hit[0] > 20.0 and hit.material[0] == ground
    # straight-down rays across the seams between the area's ground and the backdrop all hit
    g_lo, g_hi = w.vertices.min(0), w.vertices.max(0)
    assert g_hi[0] - hi[0] > 200.0 and lo[0] - g_lo[0] > 200.0
    xs = np.linspace(lo[0] - 30.0, hi[0] + 30.0, 1201)
    for y in (lo[1] - 0.05, hi[1] + 0.05, 0.0):
        o = np.column_stack([xs, np.full_like(xs, y), np.full_like(xs, 30.0)])
        hit = w.raycast(o, np.tile([0.0, 0.0, -1.0], (len(xs), 1)))
        assert hit.hit.all(), (kind, y)


@pytest.mark.parametrize("kind", ["forest", "urban", "indoor"])
def test_scripted_route_is_collision_free_and_flown(kind):
    w = build_world(WorldSpec(kind, 7, "medium"))
    wp = plan_route(w, clearance=0.6)
    np.testing.assert_allclose(wp[0], w.start, atol=1e-6)
    np.testing.assert_allclose(wp[-1], w.goal, atol=1e-6)
    traj = route_trajectory(wp, speed=2.5)
    assert np.max(np.linalg.norm(traj.vel, axis=1)) <= 2.5 + 0.05
    assert w.distance(traj.pos).min() >= 0.5
    v = Vehicle(w, w.start, yaw=float(traj.yaw[0]))
    v.follow(traj)
    for _ in range(int(np.ceil(traj.duration / 0.05)) + 40):
        s = v.step(0.05)
    assert not s.collided
    assert np.linalg.norm(s.pos - w.goal) < 0.1


def test_vehicle_limits_and_collision():
    plane = o3d.geometry.TriangleMesh.create_box(1, 20, 5).translate((5, -10, 0))
    w = World.from_mesh(plane)
    # a step reference 20 m away: the vehicle must respect max_vel / max_acc
    traj = Trajectory(t=[0.0], pos=[[20.0, 0.0, 1.5]], vel=[[0, 0, 0]], acc=[[0, 0, 0]], yaw=[0.0])
    v = Vehicle(w, [0.0, 0.0, 1.5], max_vel=2.0, max_acc=1.0)
    v.follow(traj)
    prev = v.state.vel.copy()
    for _ in range(200):
        s = v.step(0.05)
        assert np.linalg.norm(s.vel) <= 2.0 + 1e-9
        assert np.linalg.norm(s.vel - prev) <= 1.0 * 0.05 + 1e-9
        prev = s.vel.copy()
    assert s.collided  # the wall at x = 5 is in the way
    R = v.pose[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    with pytest.raises(ValueError, match="dt"):
        v.step(0.0)


def test_world_spec_from_parameters_reads_a_zero_extent_as_the_default():
    from depth_nodes.sim.world import NAMED_DENSITY, WorldSpec

    default = WorldSpec.from_params("forest", 3, "dense", [0.0, 0.0])
    assert default == WorldSpec("forest", 3, NAMED_DENSITY["forest"]["dense"])
    assert WorldSpec.from_params("urban", 3, 2.5, [20, 12]).extent == (20.0, 12.0)
    with pytest.raises(ValueError, match="length, width"):
        WorldSpec.from_params("forest", 3, "medium", [20.0])

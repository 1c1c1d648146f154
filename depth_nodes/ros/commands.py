"""CLI subcommands of the ROS layer: ``depth-nodes bench conversions`` and ``bench pipeline``."""
from __future__ import annotations

import logging

import numpy as np

from depth_nodes.cliutil import add_json_flag, emit_json, run_info, time_call

log = logging.getLogger(__name__)

_H, _W = 480, 640


def _mb_s(nbytes: int, ms: float) -> float:
    return nbytes / 1e6 / (ms / 1e3)


def _data_assignment_options(flat: np.ndarray, repeat: int) -> dict:
    """MB/s of ways to put a 640x480 rgb8 buffer into ``Image.data`` (why conversions uses check_fields + array)."""
    from array import array

    from sensor_msgs.msg import Image

    def as_array():
        a = array("B")
        a.frombytes(memoryview(flat))
        return a

    def assign(make_msg, make_data):
        def run():
            make_msg().data = make_data()
        return run

    options = {
        "bytes": (Image, flat.tobytes, repeat),
        "array": (Image, as_array, repeat),
        "memoryview": (Image, lambda: memoryview(flat), 2),
        "numpy": (Image, lambda: flat, 2),
    }
    if "_check_fields" in Image.__slots__:  # rosidl >= Iron
        options["array_check_fields"] = (lambda: Image(check_fields=True), as_array, repeat)
    out = {}
    for name, (make_msg, make_data, n) in options.items():
        ms = time_call(assign(make_msg, make_data), repeat=n, warmup=1)["median_ms"]
        out[f"image_data_assign_{name}_mb_s"] = _mb_s(flat.nbytes, ms)
    return out


def _esdf_transport(conv, rng, timed) -> dict:
    """What sending the planner's ESDF window between processes would cost.

    The planner reads a 16 x 16 x 5 m window at 0.1 m every cycle (1.28 M voxels).
    As a standard message that is a PointCloud2 with x, y, z, distance; this is
    the measurement behind composing the mapper and planner in one process.
    """
    nx, ny, nz = 160, 160, 50
    g = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1)
    xyz = (g.reshape(-1, 3) * 0.1).astype(np.float32)
    dist = rng.uniform(0.0, 1.0, xyz.shape[0]).astype(np.float32)
    msg = conv.xyz_to_cloud_msg(xyz, {"distance": dist}, frame_id="map")
    return {"esdf_window_voxels": int(xyz.shape[0]),
            "esdf_window_as_cloud_mb": len(msg.data) / 1e6,
            "esdf_window_to_cloud_ms": timed(lambda: conv.xyz_to_cloud_msg(xyz, {"distance": dist}, frame_id="map")),
            "esdf_window_from_cloud_ms": timed(lambda: conv.cloud_to_structured(msg))}


def bench_conversions(repeat: int, seed: int) -> dict:
    """Median timings of message <-> numpy conversions on real rclpy messages."""
    from depth_nodes.ros import conversions as conv

    rng = np.random.default_rng(seed)
    images = {
        "rgb8": rng.integers(0, 256, (_H, _W, 3), dtype=np.uint8),
        "32fc1": rng.uniform(0.3, 20.0, (_H, _W)).astype(np.float32),
        "16uc1": rng.integers(0, 20000, (_H, _W), dtype=np.uint16),
    }
    out: dict = {}

    def timed(fn) -> float:
        return time_call(fn, repeat=repeat, warmup=5)["median_ms"]

    for name, img in images.items():
        encoding = name.upper() if name[0].isdigit() else name
        msg = conv.array_to_image_msg(img, encoding)
        if not np.array_equal(conv.image_to_array(msg), img):
            raise RuntimeError(f"image round trip failed for {encoding}")
        out[f"image_to_array_{name}_mb_s"] = _mb_s(img.nbytes, timed(lambda m=msg: conv.image_to_array(m)))
        out[f"image_to_array_copy_{name}_mb_s"] = _mb_s(  # when the caller needs an owned array
            img.nbytes, timed(lambda m=msg: conv.image_to_array(m).copy()))
        out[f"array_to_image_{name}_mb_s"] = _mb_s(
            img.nbytes, timed(lambda a=img, e=encoding: conv.array_to_image_msg(a, e)))
        if name != "rgb8":
            out[f"depth_to_metres_{name}_mb_s"] = _mb_s(img.nbytes, timed(lambda m=msg: conv.depth_to_metres(m)))
    out.update(_data_assignment_options(images["rgb8"].reshape(-1), repeat))
    out["image_to_array_mb_s"] = min(out[f"image_to_array_{n}_mb_s"] for n in ("rgb8", "32fc1"))
    out["array_to_image_mb_s"] = min(out[f"array_to_image_{n}_mb_s"] for n in ("rgb8", "32fc1"))

    n = 100_000
    xyz = rng.normal(0.0, 10.0, (n, 3)).astype(np.float32)
    intensity = rng.uniform(0.0, 1.0, n).astype(np.float32)
    cloud = conv.xyz_to_cloud_msg(xyz, {"intensity": intensity}, frame_id="map")
    if not np.array_equal(conv.cloud_to_xyz(cloud), xyz):
        raise RuntimeError("cloud round trip failed")
    out["cloud_xyz_100k_ms"] = timed(lambda: conv.cloud_to_xyz(cloud))
    out["cloud_xyz_100k_keep_nans_ms"] = timed(lambda: conv.cloud_to_xyz(cloud, skip_nans=False))
    out["xyz_to_cloud_100k_ms"] = timed(lambda: conv.xyz_to_cloud_msg(xyz, frame_id="map"))
    out["xyz_intensity_to_cloud_100k_ms"] = timed(
        lambda: conv.xyz_to_cloud_msg(xyz, {"intensity": intensity}, frame_id="map"))
    out.update(_esdf_transport(conv, rng, timed))
    out["run_info"] = run_info(seed=seed, repeat=repeat, image_size=f"{_W}x{_H}", cloud_points=n,
                               cloud_point_step=int(cloud.point_step), device="cpu")
    return out


def _print_table(result: dict) -> None:
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key != "run_info":
            print(f"{key:<{width}}  {value:12.3f}")
    print("run_info: " + ", ".join(f"{k}={v}" for k, v in result["run_info"].items()))


def _cmd_bench_conversions(args) -> int:
    if args.repeat < 1:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    log.info("benchmarking message conversions (%d repeats per case)", args.repeat)
    result = bench_conversions(args.repeat, args.seed)
    if args.json:
        emit_json(result)
    else:
        _print_table(result)
    return 0


def _cmd_bench_pipeline(args) -> int:
    from depth_nodes.ros.pipeline_bench import best_available_mode, bench_pipeline

    mode = args.mode or best_available_mode()
    log.info("benchmarking the running graph (mode %s, input from %s) for %.0f s after %.0f s warm-up",
             mode, args.source, args.duration, args.warmup)
    result = bench_pipeline(mode, args.duration, args.warmup, args.world, args.density, args.seed, args.source,
                            args.node_threads)
    if args.json:
        emit_json(result)
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def register(groups) -> None:
    p = groups["bench"].add_parser(
        "conversions", help="message <-> numpy conversion speed (Image, PointCloud2)",
        description="Median speed of Image and PointCloud2 conversions on real rclpy messages.")
    p.add_argument("--repeat", type=int, default=200, help="timed calls per case (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the test data")
    add_json_flag(p)
    p.set_defaults(func=_cmd_bench_conversions)

    p = groups["bench"].add_parser(
        "pipeline", help="end-to-end latency camera frame -> trajectory of the running multi-process graph",
        description="Launch the mav_nav graph fed with 320x240 camera frames at 10 Hz (a recorded simulated "
                    "flight replayed by bag_player, or the live simulator) and measure camera -> "
                    "planner/trajectory latency, output rates and dropped frames.")
    p.add_argument("--mode", choices=("gt", "sgbm", "mono-radar"), default=None,
                   help="depth source (default: mono-radar when trained weights exist, else sgbm)")
    p.add_argument("--duration", type=float, default=60.0, help="measured seconds (default 60)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds ignored after the first trajectory")
    p.add_argument("--source", choices=("bag", "sim"), default="bag",
                   help="input: bag (default; a simulated flight recorded first, then replayed in real time, so "
                        "the CPU runs only the pipeline) or sim (the live simulator renders on the same CPU)")
    p.add_argument("--node-threads", type=int, default=1,
                   help="OMP_NUM_THREADS of every node process (Open3D, the TSDF kernel and the network runtime "
                        "size their thread pools by it); default 1: three processes share this benchmark's CPU "
                        "and threads of one process spinning on the other's cores cost more than they give; "
                        "0 keeps the environment's setting")
    p.add_argument("--world", choices=("forest", "urban", "indoor"), default="forest", help="simulated world")
    p.add_argument("--density", choices=("sparse", "medium", "dense"), default="medium", help="obstacle density")
    p.add_argument("--seed", type=int, default=7, help="world seed")
    add_json_flag(p)
    p.set_defaults(func=_cmd_bench_pipeline)

"""Where a bundle's load goes: the import, ``paskdnn.load`` under cProfile, and
the first inference, in one fresh process (run it twice: the first run also
fills the OS's page cache).

    python3 -m paskdnn precompile resnet50 --arch sm_90 --dtype float16 --layout NHWC -o /tmp/r50.pask
    python3 bench/load_profile.py /tmp/r50.pask [--device cuda] [--top 30]
"""
import time

T0 = time.perf_counter()
import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402

import numpy as np  # noqa: E402

import paskdnn  # noqa: E402

T1 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--top", type=int, default=30, help="rows of each profile table")
    args = ap.parse_args()
    pr = cProfile.Profile()
    pr.enable()
    runner = paskdnn.load(args.bundle, device=args.device, policy="pask")
    t2 = time.perf_counter()
    pr.disable()
    x = np.random.default_rng(0).standard_normal((runner.batch,) + tuple(runner.graph.input_shape)).astype(np.float32)
    t3 = time.perf_counter()
    runner.run(x)
    t4 = time.perf_counter()
    print(f"import {1e3 * (T1 - T0):.0f} ms, load {1e3 * (t2 - T1):.0f} ms, first run {1e3 * (t4 - t3):.0f} ms")
    stats = pstats.Stats(pr)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

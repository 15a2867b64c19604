"""Builds bench/plan_dispatch.c against the installed libpaskdnn (pkg-config)
and runs it: host time per call of the eager C entry points against prepared
calls (pask_plan_execute), resident kernel, tiny ops.

    python3 bench/plan_dispatch.py [--device cpu|cuda] [--native] [--iterations N] [--pending-hints N]
                                   [--out FILE.md]

--pending-hints N gives the context N hints that no call matches first (every
call then looks itself up among them).
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device (default: %(default)s)")
    ap.add_argument("--iterations", type=int, default=200000, help="calls per measurement (default: %(default)s)")
    ap.add_argument("--native", action="store_true", help="cuda: paskdnn's own kernels only (a context without cuDNN)")
    ap.add_argument("--pending-hints", type=int, default=0, metavar="N",
                    help="N pending hints that no call matches (default: none)")
    ap.add_argument("--out", help="also write the result as Markdown here")
    args = ap.parse_args()
    pc = subprocess.run([sys.executable, "-m", "paskdnn", "config", "--pkgconfig-dir"], check=True,
                        capture_output=True, text=True).stdout.strip()
    env = dict(os.environ, PKG_CONFIG_PATH=pc)
    run_env = dict(os.environ, PLAN_DISPATCH_HINTS=str(args.pending_hints))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "paskdnn"], env=env, check=True, capture_output=True,
                           text=True).stdout.split()
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "plan_dispatch"
        subprocess.run(["cc", "-O2", "-std=c11", str(HERE / "plan_dispatch.c"), "-o", str(exe), *flags, "-ldl"], check=True)
        out = subprocess.run([str(exe), args.device, str(args.iterations)] + (["native"] if args.native else []), check=True, capture_output=True,
                             text=True, env=run_env).stdout
    print(out, end="")
    if args.out:
        cmd = (f"python3 bench/plan_dispatch.py --device {args.device} --iterations {args.iterations}"
               + (" --native" if args.native else "")
               + (f" --pending-hints {args.pending_hints}" if args.pending_hints else ""))
        Path(args.out).write_text(
            f"# Prepared-call dispatch, {args.device}\n\n{datetime.date.today()}, {platform.node()} "
            f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores), `{cmd}`\n\n```\n{out}```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

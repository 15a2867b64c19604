"""python -m paskdnn: the main job, ONNX runs, the demo, build configuration queries and the doctor.

    python -m paskdnn coldstart --model resnet50   time-to-first-inference per policy, fresh processes
    python -m paskdnn run MODEL.onnx   one inference of an ONNX model: output shape, top-5, per-layer report
    python -m paskdnn precompile MODEL --arch sm_80,sm_90 -o model.pask   a bundle, made without a GPU
    python -m paskdnn inspect model.pask [--json]   a bundle's sections, arches, kernels, hints
    python -m paskdnn demo            run each op, check it, print the solver chosen
    python -m paskdnn config --pkgconfig-dir | --include-dir | --lib-dir
    python -m paskdnn doctor [--device cuda|hip] [--json]
"""
from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    import paskdnn

    ctx = paskdnn.Context(num_threads=args.threads) if args.threads else paskdnn.get_default_context()
    rng = np.random.default_rng(0)
    print(f"paskdnn {paskdnn.version()} on {ctx.device}, {ctx.num_threads} threads, policy {ctx.policy}")

    decisions = (("resident_hits", "resident"), ("reuses", "reuse"), ("inflight_waits", "waited"),
                 ("blocking_loads", "load"))
    print(f"  {'op':<40} {'first call: solver (decision)':<36} {'ms':>7}   {'steady: solver':<20} {'ms':>7}  max|err|")

    def run(label, fn, check):
        before = ctx.stats()
        t0 = time.perf_counter()
        y = fn()
        first = (time.perf_counter() - t0) * 1e3
        after = ctx.stats()
        decision = next((name for key, name in decisions if after[key] > before[key]), "?")
        first_solver = f"{paskdnn.last_solver()} ({decision})"
        ctx.wait_loads(timeout=60)  # let a reused layer's best kernel land
        reps = 5
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        steady = (time.perf_counter() - t0) * 1e3 / reps
        err = check(y)
        print(f"  {label:<40} {first_solver:<36} {first:7.2f}   {paskdnn.last_solver():<20} {steady:7.3f}  {err:.1e}")
        if not err < 1e-3:
            raise SystemExit(f"paskdnn demo: {label} disagrees with the numpy check (max error {err})")

    def ref_conv(x, w, stride, pad):  # float64 im2col, the demo's own check
        x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        o, c, kh, kw = w.shape
        n, _, h, wd = x.shape
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
        cols = np.stack([x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                         for i in range(kh) for j in range(kw)], axis=2)
        return np.einsum("nckhw,ock->nohw", cols, w.reshape(o, c, kh * kw).astype(np.float64))

    for (c, o, k, s, p, hw) in [(3, 64, 7, 2, 3, 224), (64, 64, 3, 1, 1, 56), (64, 256, 1, 1, 0, 56),
                                (256, 512, 1, 2, 0, 56), (512, 512, 3, 1, 1, 7)]:
        x = rng.standard_normal((1, c, hw, hw), dtype=np.float32)
        w = (rng.standard_normal((o, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
        ref = ref_conv(x, w, s, p)
        run(f"conv2d {c}->{o} {k}x{k}/{s} at {hw}x{hw}",
            lambda: paskdnn.conv2d(x, w, stride=s, padding=p, context=ctx),
            lambda y: float(np.abs(y - ref).max()))
    xd = rng.standard_normal((1, 32, 112, 112), dtype=np.float32)
    wd = rng.standard_normal((32, 1, 3, 3), dtype=np.float32)
    refd = np.concatenate([ref_conv(xd[:, i:i + 1], wd[i:i + 1], 1, 1) for i in range(32)], axis=1)
    run("conv2d depthwise 32ch 3x3 at 112x112", lambda: paskdnn.conv2d(xd, wd, padding=1, groups=32, context=ctx),
        lambda y: float(np.abs(y - refd).max()))
    a = rng.standard_normal((512, 512), dtype=np.float32)
    b = rng.standard_normal((512, 512), dtype=np.float32)
    refm = a.astype(np.float64) @ b
    run("matmul 512x512x512", lambda: paskdnn.matmul(a, b, context=ctx),
        lambda y: float(np.abs(y - refm).max() / np.abs(refm).max()))
    xl = rng.standard_normal((1, 2048), dtype=np.float32)
    wl = rng.standard_normal((1000, 2048), dtype=np.float32) / 45
    refl = xl.astype(np.float64) @ wl.T.astype(np.float64)
    run("linear 2048->1000 batch 1", lambda: paskdnn.linear(xl, wl, context=ctx),
        lambda y: float(np.abs(y - refl).max()))
    xp = rng.standard_normal((1, 64, 112, 112), dtype=np.float32)
    refp = np.pad(xp, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    refp = np.max(np.stack([refp[:, :, i:i + 111:2, j:j + 111:2] for i in range(3) for j in range(3)]), axis=0)
    run("max_pool2d 3x3/2 pad 1 at 112x112", lambda: paskdnn.max_pool2d(xp, 3, 2, 1, context=ctx),
        lambda y: float(np.abs(y - refp).max()))
    xg = rng.standard_normal((1, 2048, 7, 7), dtype=np.float32)
    refg = xg.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    run("adaptive_avg_pool2d 2048ch 7x7 -> 1x1", lambda: paskdnn.adaptive_avg_pool2d(xg, 1, context=ctx),
        lambda y: float(np.abs(y - refg).max()))
    s = ctx.stats()
    print(f"stats: {s['calls']} calls, {s['resident_hits']} resident hits, {s['reuses']} reuses, "
          f"{s['blocking_loads']} blocking loads ({s['blocking_wait_ms']:.1f} ms), {s['loads']} kernels loaded "
          f"({s['load_ms']:.1f} ms), {s['resident']} resident")
    print("demo OK: every op agreed with its float64 check")
    return 0


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    """python -m paskdnn run MODEL.onnx: import, one inference, the output's shape and top-5, the report."""
    import os

    import numpy as np

    import paskdnn
    from paskdnn import graph as G

    from .coldstart import check_arguments

    check_arguments(args, ap)  # device and dtype defaults; a GPU that is not there; float16 on the CPU
    if not os.path.isfile(args.model):
        ap.error(f"{args.model}: no such file")
    x = None
    if args.input:
        try:
            x = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError) as e:
            ap.error(f"--input {args.input}: cannot read it as a .npy array ({e})")
        if args.batch is not None and x.ndim and x.shape[0] != args.batch:
            ap.error(f"--input {args.input} has batch {x.shape[0]} but --batch is {args.batch}")
    batch = args.batch if args.batch is not None else (int(x.shape[0]) if x is not None and x.ndim else None)
    try:
        g = paskdnn.load_onnx(args.model, layout=args.layout, dtype=args.dtype, batch=batch)
    except paskdnn.UnsupportedError as e:  # the model, not a crash: one line, exit 2
        ap.exit(2, f"{ap.prog}: error: {args.model}: {str(e).replace('pass batch=', 'pass --batch N')}\n")
    except Exception as e:  # noqa: BLE001 - not an ONNX model, a bad protobuf, ...
        ap.exit(2, f"{ap.prog}: error: {args.model}: cannot import it ({type(e).__name__}: {e})\n")
    if x is None:
        x = np.random.default_rng(0).standard_normal(g.onnx_input_shape).astype(np.float32)
    elif tuple(x.shape) != tuple(g.onnx_input_shape):
        ap.error(f"--input {args.input} has shape {tuple(x.shape)}; the model takes {g.onnx_input_shape} (NCHW)")
    try:
        ctx = paskdnn.Context(args.device)
        runner = G.Runner(g, ctx, batch=g.batch)
        y = g.output_to_onnx(runner.run(g.input_from_onnx(x.astype(np.float32)), timed=True))
    except Exception as e:  # a clear message and a non-zero exit, not a traceback
        print(f"paskdnn run failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    y = np.asarray(y, np.float32)
    print(f"{args.model}: {len(g.nodes)} paskdnn nodes, {args.layout} {args.dtype} on {ctx.device}, "
          f"input {g.onnx_input_name} {g.onnx_input_shape}")
    print(f"output {g.onnx_output_name}: shape {tuple(y.shape)}")
    for i, row in enumerate(y.reshape(y.shape[0], -1) if y.ndim else y.reshape(1, 1)):
        top = np.argsort(-row, kind="stable")[:5]
        print(f"  sample {i} top-5: " + ", ".join(f"{int(j)}: {row[j]:.5g}" for j in top))
    print(f"per-layer report (first inference):")
    print(f"  {'layer':<32} {'op':<20} {'solver':<28} {'decision':<9} {'ms':>8}")
    for r in runner.report:
        ms = "" if r["ms"] is None else f"{r['ms']:8.3f}"
        print(f"  {r['layer'][:32]:<32} {r['op']:<20} {r['solver'][:28]:<28} {r['decision']:<9} {ms:>8}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from ._lib import library_dir, pkgconfig_dir

    d = library_dir()
    if args.pkgconfig_dir:
        print(pkgconfig_dir())
    elif args.include_dir:
        print(d / "include")
    else:
        print(d)
    return 0


_DESCRIPTION = """\
paskdnn: DNN primitives that make a fresh process's first inference fast.

  python -m paskdnn coldstart --model resnet50   the main job: time to first inference per policy
  python -m paskdnn run MODEL.onnx               one inference of your own ONNX model (output, top-5, report)
  python -m paskdnn precompile MODEL -o m.pask   a bundle (graph, final weights, kernels per arch, hints), no GPU needed
  python -m paskdnn inspect m.pask               a bundle's sections, arches, kernels and hints
  python -m paskdnn demo                         run each op once, check it, print the solver chosen
  python -m paskdnn config --pkgconfig-dir       where the C library, header and pkg-config file are
  python -m paskdnn doctor --device cuda         what paskdnn finds for its GPU backends, and what is missing

Run "python -m paskdnn COMMAND --help" for a command's options.
"""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .coldstart import DTYPES, _device, _positive_int
    from .coldstart import add_arguments as add_coldstart_arguments

    parser = argparse.ArgumentParser(prog="python -m paskdnn", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"paskdnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cold = sub.add_parser("coldstart", help="the main job: time to first inference of a model under each policy, "
                          "each run a fresh process, user cache cold and warm",
                          description="The main job: time to first inference of a model under each policy, "
                          "each run a fresh process, with the user cache cold (empty) and warm (filled by one "
                          "untimed run). Prints a table and writes coldstart.md, coldstart.json, coldstart.png, "
                          "timeline.png and the pask cold run's Chrome trace to --out.")
    add_coldstart_arguments(cold)
    run = sub.add_parser("run", help="one inference of an ONNX model: its output's shape, top-5 and the "
                         "per-layer report",
                         description="Import an ONNX model (paskdnn.load_onnx), run one inference of an input "
                         "(--input, NCHW as the model takes it; default: seeded random normal) and print the "
                         "output's shape, each sample's top-5 and the per-layer report (solver, what the policy did, "
                         "ms). Needs the onnx package: pip install 'paskdnn[onnx]'.")
    run.add_argument("model", metavar="MODEL.onnx", help="the ONNX model file")
    run.add_argument("--device", default="", type=_device,
                     help="cpu, cuda[:N] or hip[:N] (default: cuda when a GPU is found, else cpu)")
    run.add_argument("--dtype", default="", choices=("",) + DTYPES, metavar="{" + ",".join(DTYPES) + "}",
                     help="float32 (the CPU's only dtype, its default), float16 (the GPU default) or bfloat16 "
                          "(GPU only)")
    run.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"),
                     help="activation layout the model runs in; the input stays NCHW (default: %(default)s)")
    run.add_argument("--input", default="", metavar="X.npy",
                     help="the input, an NCHW .npy array of the model's input shape (default: seeded random)")
    run.add_argument("--batch", type=_positive_int, default=None, metavar="N",
                     help="batch size, needed when the model's batch dim is dynamic (default: the model's, "
                          "or --input's)")
    from .precompile import add_inspect_arguments, add_precompile_arguments

    pre = sub.add_parser("precompile", help="make a bundle: graph, weights in final form, GPU kernels per arch, "
                         "hints; runs without a GPU",
                         description="Make a bundle (docs/bundles.md): the graph of a zoo model or an ONNX file, its "
                         "weights in their final dtype and layout, every native GPU kernel its calls can run on, "
                         "compiled per arch (NVRTC, else nvcc), and the hint list per batch size. Runs without a GPU. "
                         "Load it with paskdnn.load(FILE) or python -m paskdnn coldstart --bundle FILE.")
    add_precompile_arguments(pre)
    insp = sub.add_parser("inspect", help="check a bundle and list its sections, arches, kernels and hints",
                          description="Check a bundle (header, index, every section's SHA-256) and list its "
                          "sections, arches, kernels, hints and sizes. Exit 1 when the file is not a usable bundle.")
    add_inspect_arguments(insp)
    demo = sub.add_parser("demo", help="run each op once, check it against numpy and print the solver chosen",
                          description="Run each op once on the CPU, check it against a float64 numpy "
                          "computation and print the solver the registry chose for the first and later calls.")
    demo.add_argument("--threads", type=_non_negative_int, default=0,
                      help="CPU threads; 0 uses all cores (default: 0)")
    cfg = sub.add_parser("config", help="print where the C library, header and pkg-config file are",
                         description="Print where the installed C library (default), its header or its "
                         "pkg-config file are, for building C or C++ programs against libpaskdnn.")
    group = cfg.add_mutually_exclusive_group()
    group.add_argument("--pkgconfig-dir", action="store_true", help="the folder holding paskdnn.pc")
    group.add_argument("--include-dir", action="store_true", help="the folder holding paskdnn.h")
    group.add_argument("--lib-dir", action="store_true", help="the folder holding libpaskdnn (the default)")
    from .doctor import add_arguments as add_doctor_arguments

    doctor = sub.add_parser("doctor", help="print what paskdnn finds for its GPU backends (driver, devices, "
                            "NVRTC, cuDNN, HIP, hiprtc, MIOpen, the cache folder) and what is missing",
                            description="Print what paskdnn finds on this machine for its CUDA and HIP "
                            "backends: the driver or runtime, the devices and their architectures, the run-time "
                            "compiler and the vendor DNN library, each with its file and version or why it "
                            "cannot be used and what it would enable, and the cache folder's state. Exit status "
                            "1 when the backend asked for with --device cannot work.")
    add_doctor_arguments(doctor)
    parser._paskdnn_subparsers = {"coldstart": cold, "run": run, "demo": demo, "config": cfg,
                                 "doctor": doctor, "precompile": pre, "inspect": insp}  # for errors in their usage
    return parser


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "coldstart-child":  # internal: one measured process of the main job
        from ._coldstart_child import child

        return child(argv[1:])
    parser = build_parser()
    if not argv:  # no command: show what there is rather than running something
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the subcommand's usage, not the top level's
        owner = parser._paskdnn_subparsers.get(args.command, parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "coldstart":
        from .coldstart import run as coldstart_run

        return coldstart_run(args, parser._paskdnn_subparsers["coldstart"], argv)
    if args.command == "run":
        return _run(args, parser._paskdnn_subparsers["run"])
    if args.command == "precompile":
        from .precompile import run_precompile

        return run_precompile(args, parser._paskdnn_subparsers["precompile"], argv)
    if args.command == "inspect":
        from .precompile import run_inspect

        return run_inspect(args, parser._paskdnn_subparsers["inspect"])
    if args.command == "config":
        return _config(args)
    if args.command == "doctor":
        from .doctor import run as doctor_run

        return doctor_run(args)
    if args.command == "demo":
        try:
            return _demo(args)
        except Exception as e:  # a clear message and a non-zero exit, not a traceback
            print(f"paskdnn demo failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

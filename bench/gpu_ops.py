"""GPU benchmark (device machine): paskdnn's own CUDA kernels against cuDNN /
cuBLAS through PyTorch, on the convolution layers of ResNet-50, VGG-16 and
MobileNetV2 (shapes read off torchvision's models), fp16 NHWC and fp32 NCHW,
batch 1 and 32, plus GEMM and pooling, plus per-kernel NVRTC compile and
cubin load times.

    python bench/gpu_ops.py [--quick] [--out bench/results/gpu.md]

Times are medians of CUDA-event-timed loops after warm-up (the kernel resident,
cuDNN's benchmark mode on). Ratios are paskdnn / PyTorch: below 1 = paskdnn faster.
"""
import argparse
import collections
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torchvision

import paskdnn

F = torch.nn.functional


def conv_layers(model_name):
    """(c, o, k, stride, pad, dil, groups, h, w) -> count, from a batch-1 forward pass."""
    model = getattr(torchvision.models, model_name)(weights=None).eval()
    shapes = collections.Counter()

    def hook(mod, inp, _out):
        x = inp[0]
        shapes[(mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0],
                mod.dilation[0], mod.groups, x.shape[2], x.shape[3])] += 1

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return shapes


def cuda_time(fn, reps):
    """Median ms per call over several event-timed loops of reps calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / reps)
    return statistics.median(samples)


def graph_time(fn, reps):
    """Like cuda_time, replaying a CUDA graph of reps calls (no host overhead); None if capture fails."""
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                fn()
        return cuda_time(g.replay, 1) / reps
    except Exception:
        torch.cuda.synchronize()
        return None


def settle(fn, ctx, times=8):
    """Runs fn until the context's choice is made: plans loaded, device-timed runs read back."""
    for _ in range(times):
        fn()
        ctx.wait_loads(120)
        torch.cuda.synchronize()


def bench_convs(ctx, model, shapes, dtype, layout, batch, reps, rows, auto=None):
    dt = {"fp16": torch.float16, "fp32": torch.float32}[dtype]
    tot = {"ours": 0.0, "ours_graph": 0.0, "torch": 0.0, "torch_graph": 0.0}
    graph_ok = True
    for (c, o, k, s, p, d, g, h, w), count in sorted(shapes.items()):
        x = torch.randn(batch, c, h, w, device="cuda", dtype=dt)
        wt = torch.randn(o, c // g, k, k, device="cuda", dtype=dt) / (c // g * k * k) ** 0.5
        b = torch.randn(o, device="cuda", dtype=dt)
        if layout == "NHWC":  # channels-last activations and OHWI weights, as an NHWC engine keeps them
            xl, wl, wlay = x.permute(0, 2, 3, 1).contiguous(), wt.permute(0, 2, 3, 1).contiguous(), "OHWI"
            xt, wtt = x.to(memory_format=torch.channels_last), wt.to(memory_format=torch.channels_last)
        else:
            xl, wl, wlay, xt, wtt = x, wt, "OIHW", x, wt

        def ours():
            return paskdnn.conv2d(xl, wl, b, s, p, d, g, layout=layout, weight_layout=wlay, activation="relu",
                                  context=ctx)

        def theirs():
            return F.relu(F.conv2d(xt, wtt, b, s, p, d, g))

        def ours_auto():
            return paskdnn.conv2d(xl, wl, b, s, p, d, g, layout=layout, weight_layout=wlay, activation="relu",
                                  context=auto)

        y = ours()
        solver = paskdnn.last_solver()
        auto_solver, g_auto = None, None
        if auto is not None:
            settle(ours_auto, auto)
            auto_solver = paskdnn.last_solver()
            g_auto = graph_time(ours_auto, reps)
            tot["auto_graph"] = tot.get("auto_graph", 0.0) + count * (g_auto or float("nan"))
        ref = theirs()
        yc = y.permute(0, 3, 1, 2) if layout == "NHWC" else y
        err = float((yc.float() - ref.float()).norm() / ref.float().norm().clamp_min(1e-12))
        t_ours, t_torch = cuda_time(ours, reps), cuda_time(theirs, reps)
        g_ours, g_torch = graph_time(ours, reps), graph_time(theirs, reps)
        graph_ok = graph_ok and g_ours is not None and g_torch is not None
        tot["ours"] += count * t_ours
        tot["torch"] += count * t_torch
        tot["ours_graph"] += count * (g_ours or float("nan"))
        tot["torch_graph"] += count * (g_torch or float("nan"))
        rows.append(dict(model=model, dtype=dtype, layout=layout, batch=batch, c=c, o=o, k=k, stride=s, pad=p,
                         groups=g, hw=h, count=count, solver=solver, ours_ms=t_ours, torch_ms=t_torch,
                         ours_graph_ms=g_ours, torch_graph_ms=g_torch, rel_err=err, auto_solver=auto_solver,
                         auto_graph_ms=g_auto))
    return tot, graph_ok


def compile_and_load_times(reps_dir):
    """Fresh cache: each CUDA solver's first call (NVRTC compile or prebuilt cubin load), per dtype."""
    out = []
    x16 = torch.randn(1, 64, 56, 56, device="cuda", dtype=torch.float16)
    cases = {
        "conv2d.cuda_igemm": lambda c, x: paskdnn.conv2d(x, torch.randn(64, 64, 3, 3, device="cuda", dtype=x.dtype),
                                                         padding=1, context=c),
        "conv2d.cuda_igemm_fixed": lambda c, x: paskdnn.conv2d(
            x, torch.randn(64, 64, 3, 3, device="cuda", dtype=x.dtype), padding=1, context=c),
        "conv2d.cuda_depthwise": lambda c, x: paskdnn.conv2d(
            x, torch.randn(64, 1, 3, 3, device="cuda", dtype=x.dtype), padding=1, groups=64, context=c),
        "gemm.cuda_tc": lambda c, x: paskdnn.matmul(x[0, 0], x[0, 1], context=c),
        "pool2d.cuda_direct": lambda c, x: paskdnn.max_pool2d(x, 3, 2, 1, context=c),
        "pool2d.cuda_global_avg": lambda c, x: paskdnn.adaptive_avg_pool2d(x, 1, context=c),
    }
    for dt in (torch.float16, torch.float32, torch.bfloat16):
        x = x16.to(dt)
        for name, fn in cases.items():
            c = paskdnn.Context("cuda", cache_dir=tempfile.mkdtemp(dir=reps_dir), solvers=[name], loader_threads=0)
            t0 = time.perf_counter()
            fn(c, x)
            torch.cuda.synchronize()
            first = (time.perf_counter() - t0) * 1e3
            st = c.stats()
            out.append(dict(solver=name, dtype=str(dt).replace("torch.", ""), first_call_ms=first,
                            compiles=st["compiles"], compile_ms=st["compile_ms"], load_ms=st["load_ms"]))
            c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="bench/results/gpu.md")
    ap.add_argument("--models", nargs="+", default=["resnet50", "vgg16", "mobilenet_v2"],
                    help="models whose conv layers to run; 'none' for none (GEMM, pooling only)")
    ap.add_argument("--no-first-call", action="store_true", help="skip the per-kernel first-call (compile/load) table")
    ap.add_argument("--configs", nargs="+", default=None,
                    help="conv configurations to run, as dtype-layout-batch (default: fp16-NHWC-1 fp16-NHWC-32 fp32-NCHW-1)")
    ap.add_argument("--convs-only", action="store_true", help="skip the GEMM and pooling rows")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    card = torch.cuda.get_device_name()
    reps = 5 if args.quick else 20
    work = tempfile.mkdtemp()
    # paskdnn's own kernels only (the native provider), and every solver (cuDNN's
    # included) ranked by the device-measured run times ("auto")
    native = [s["name"] for s in paskdnn.solvers() if s["device"] == "cuda" and "cudnn" not in s["name"]]
    ctx = paskdnn.Context("cuda", cache_dir=os.path.join(work, "cache"), solvers=native)
    auto = paskdnn.Context("cuda", cache_dir=os.path.join(work, "cache"))
    rows, totals = [], []
    configs = [("fp16", "NHWC", 1), ("fp16", "NHWC", 32), ("fp32", "NCHW", 1)]
    if args.configs:
        configs = [(d, lay, int(b)) for d, lay, b in (c.split("-") for c in args.configs)]
    models = [] if args.models == ["none"] else args.models
    if args.quick:
        configs, models = configs[:1], models[:1]
    for model in models:
        shapes = conv_layers(model)
        for dtype, layout, batch in configs:
            if model == "vgg16" and batch == 32 and dtype == "fp32":
                continue  # keeps the run inside its time budget
            t0 = time.perf_counter()
            tot, graph_ok = bench_convs(ctx, model, shapes, dtype, layout, batch, reps, rows, auto)
            totals.append(dict(model=model, dtype=dtype, layout=layout, batch=batch, convs=sum(shapes.values()),
                               **tot, graph_ok=graph_ok))
            print(f"{model} {dtype} {layout} b{batch}: ours {tot['ours']:.3f} ms, torch {tot['torch']:.3f} ms "
                  f"(graphs: {tot['ours_graph']:.3f} / {tot['torch_graph']:.3f}, auto {tot.get('auto_graph', 0):.3f})"
                  f" [{time.perf_counter() - t0:.1f}s]",
                  flush=True)
    gemm_rows = []
    # matmul: B[k x n]; linear: a weight W[n x k] (y = x W^T + bias, B transposed), as classifiers run it
    gemm_cases = [("matmul", 1, 1000, 2048), ("matmul", 32, 1000, 2048), ("matmul", 1024, 1024, 1024),
                  ("matmul", 4096, 4096, 4096), ("linear", 1, 1000, 2048), ("linear", 32, 1000, 2048)]
    for dt in () if args.convs_only else (torch.float16, torch.float32):
        for op, m, n, k in gemm_cases:
            a = torch.randn(m, k, device="cuda", dtype=dt)
            if op == "matmul":
                b = torch.randn(k, n, device="cuda", dtype=dt)
                mine = lambda c: paskdnn.matmul(a, b, context=c)  # noqa: E731
                theirs = lambda: torch.matmul(a, b)  # noqa: E731
            else:
                wt, bias = torch.randn(n, k, device="cuda", dtype=dt), torch.randn(n, device="cuda", dtype=dt)
                mine = lambda c: paskdnn.linear(a, wt, bias, context=c)  # noqa: E731
                theirs = lambda: F.linear(a, wt, bias)  # noqa: E731
            t_o = cuda_time(lambda: mine(ctx), reps)
            t_t = cuda_time(theirs, reps)
            g_o = graph_time(lambda: mine(ctx), reps)
            g_t = graph_time(theirs, reps)
            settle(lambda: mine(auto), auto)
            g_a = graph_time(lambda: mine(auto), reps)
            gemm_rows.append(dict(op=op, dtype=str(dt).replace("torch.", ""), m=m, n=n, k=k, ours_ms=t_o, torch_ms=t_t,
                                  ours_graph_ms=g_o, torch_graph_ms=g_t, auto_graph_ms=g_a,
                                  auto_solver=paskdnn.last_solver()))
    pool_rows = []
    for dt in () if args.convs_only else (torch.float16, torch.float32):
        for b_ in (1, 32):
            x = torch.randn(b_, 112, 112, 64, device="cuda", dtype=dt)
            xt = x.permute(0, 3, 1, 2)
            t_o = cuda_time(lambda: paskdnn.max_pool2d(x, 3, 2, 1, layout="NHWC", context=ctx), reps)
            t_t = cuda_time(lambda: F.max_pool2d(xt, 3, 2, 1), reps)
            pool_rows.append(dict(op="max_pool2d 3x3/2 64ch@112", dtype=str(dt).replace("torch.", ""), batch=b_,
                                  ours_ms=t_o, torch_ms=t_t))
            x7 = torch.randn(b_, 7, 7, 2048, device="cuda", dtype=dt)
            t_o = cuda_time(lambda: paskdnn.adaptive_avg_pool2d(x7, 1, layout="NHWC", context=ctx), reps)
            t_t = cuda_time(lambda: F.adaptive_avg_pool2d(x7.permute(0, 3, 1, 2), 1), reps)
            pool_rows.append(dict(op="global avg 2048ch@7", dtype=str(dt).replace("torch.", ""), batch=b_,
                                  ours_ms=t_o, torch_ms=t_t))
    loads = [] if args.no_first_call else compile_and_load_times(work)
    meta = dict(card=card, date=datetime.date.today().isoformat(), command="python3 bench/gpu_ops.py" +
                (" --quick" if args.quick else "") + " --models " + " ".join(args.models) +
                (" --no-first-call" if args.no_first_call else "") +
                (" --configs " + " ".join(args.configs) if args.configs else "") +
                (" --convs-only" if args.convs_only else ""), torch=torch.__version__,
                cudnn=torch.backends.cudnn.version(), paskdnn=paskdnn.__version__)
    data = dict(meta=meta, totals=totals, convs=rows, gemm=gemm_rows, pool=pool_rows, first_call=loads)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(data, f, indent=1)
    with open(args.out, "w") as f:
        f.write(render(data))
    print(render(data))


def render(d):
    m = d["meta"]
    L = [f"# GPU benchmark: paskdnn's own CUDA kernels vs cuDNN/cuBLAS (PyTorch)\n",
         "- paskdnn = the native provider's kernels only (`solvers=` every CUDA solver but cuDNN's); "
         "auto = a default context (cuDNN's solvers included), each layer settled on the solver the device "
         "timed fastest (graph replay)",
         f"- card: {m['card']}; date: {m['date']}; command: `{m['command']}`",
         f"- torch {m['torch']}, cuDNN {m['cudnn']}, paskdnn {m['paskdnn']}",
         "- times: median ms per call, CUDA events, warm (kernel resident; cuDNN benchmark mode); "
         "eager = one Python call per op (host overhead included), graph = CUDA-graph replay (kernel time only)",
         "- ratio = paskdnn / PyTorch (below 1: paskdnn faster); every conv has fused bias + ReLU on both sides",
         "- NHWC rows pass OHWI weights (channels last throughout); NCHW rows pass OIHW weights\n",
         "## Whole-model convolution totals\n",
         "| model | dtype | layout | batch | convs | paskdnn eager | torch eager | ratio | paskdnn graph | torch graph | ratio "
         "| auto graph | ratio |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in d["totals"]:
        L.append(f"| {t['model']} | {t['dtype']} | {t['layout']} | {t['batch']} | {t['convs']} | {t['ours']:.3f} | "
                 f"{t['torch']:.3f} | {t['ours'] / t['torch']:.2f} | {t['ours_graph']:.3f} | {t['torch_graph']:.3f} | "
                 f"{t['ours_graph'] / t['torch_graph']:.2f} | {t.get('auto_graph', float('nan')):.3f} | "
                 f"{t.get('auto_graph', float('nan')) / t['torch_graph']:.2f} |")
    L += ["\n## Per layer (graph replay where it worked)\n",
          "| model | dtype | batch | layer | x | solver | paskdnn ms | torch ms | ratio | rel err | auto solver | auto ms "
          "| ratio |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["convs"]:
        po = r["ours_graph_ms"] or r["ours_ms"]
        pt = r["torch_graph_ms"] or r["torch_ms"]
        L.append(f"| {r['model']} | {r['dtype']} {r['layout']} | {r['batch']} | {r['c']}->{r['o']} {r['k']}x{r['k']}/"
                 f"{r['stride']} g{r['groups']} @{r['hw']} | {r['count']} | {r['solver']} | {po:.4f} | {pt:.4f} | "
                 f"{po / pt:.2f} | {r['rel_err']:.1e} | {r.get('auto_solver') or '-'} | "
                 f"{r.get('auto_graph_ms') or float('nan'):.4f} | {(r.get('auto_graph_ms') or float('nan')) / pt:.2f} |")
    L += ["\n## GEMM\n", "| op | dtype | m x n x k | paskdnn eager ms | torch eager ms | ratio | paskdnn graph ms | "
          "torch graph ms | ratio | auto solver | auto graph ms | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in d["gemm"]:
        go, gt, ga = r.get("ours_graph_ms") or nan, r.get("torch_graph_ms") or nan, r.get("auto_graph_ms") or nan
        L.append(f"| {r.get('op', 'matmul')} | {r['dtype']} | {r['m']}x{r['n']}x{r['k']} | {r['ours_ms']:.4f} | {r['torch_ms']:.4f} | "
                 f"{r['ours_ms'] / r['torch_ms']:.2f} | {go:.4f} | {gt:.4f} | {go / gt:.2f} | "
                 f"{r.get('auto_solver', '-')} | {ga:.4f} | {ga / gt:.2f} |")
    L += ["\n## Pooling (eager)\n", "| op | dtype | batch | paskdnn ms | torch ms | ratio |", "|---|---|---|---|---|---|"]
    for r in d["pool"]:
        L.append(f"| {r['op']} | {r['dtype']} | {r['batch']} | {r['ours_ms']:.4f} | {r['torch_ms']:.4f} | "
                 f"{r['ours_ms'] / r['torch_ms']:.2f} |")
    L += ["\n## First call per kernel, fresh user cache (NVRTC compile, or prebuilt cubin load)\n",
          "| solver | dtype | first call ms | NVRTC compiles | compile ms | load ms (incl. compile) |",
          "|---|---|---|---|---|---|"]
    for r in d["first_call"]:
        L.append(f"| {r['solver']} | {r['dtype']} | {r['first_call_ms']:.1f} | {r['compiles']} | "
                 f"{r['compile_ms']:.1f} | {r['load_ms']:.1f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())

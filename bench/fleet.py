"""Fleet cold start (issue 16): N processes started at once on one device, each
importing its library, loading a model and running one inference; the time from
the common start to the LAST process's first result, for N = 1, 4, 8, 16, with
a bundle, without one, and (where torch and torchvision are installed) PyTorch
with the same weights.

    python3 bench/fleet.py --model resnet50 --bundle resnet50.pask --device cuda --n 1,4,8,16 \\
        --out bench/results/fleet

On this project's CPU-only CI machines it runs (--device cpu, a float32 bundle,
no PyTorch) only to check that it works; those numbers say nothing about GPU
fleets (session 10 ran it on an H100: bench/results/fleet-h100-*).

For paskdnn's processes it also keeps where each one's time went (the child's
phases, ms from the common start: import of numpy and paskdnn; the context, or
with a bundle the context and the bundle's load together, overlapped; input
uploaded, model ready; first result) and writes their medians per N and variant.

The paskdnn processes are `python -m paskdnn coldstart-child` (the main job's
child: fresh user cache folder each, first inference timed from a spawn time
given to all N at once); the PyTorch one is CHILD_TORCH below. Writes
fleet.json, fleet.md and (with matplotlib) fleet.png to --out.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD_TORCH = r"""
import json, os, sys, time
t_spawn = float(os.environ["PASKDNN_T_SPAWN"])
import torch, torchvision
import paskdnn.models as M
name, device, dtype, out = sys.argv[1:5]
model = getattr(torchvision.models, name)(num_classes=1000)
model.load_state_dict({k: torch.from_numpy(v) for k, v in M.state_dict(name, seed=0).items()}, strict=False)
dt = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
model = model.eval().to(device=device, dtype=dt, memory_format=torch.channels_last)
x = torch.randn(1, 3, 224, 224, device=device, dtype=dt).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    y = model(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
t_first = time.time()
json.dump({"first_from_start_ms": (t_first - t_spawn) * 1e3}, open(out, "w"))
"""


def launch(n, variant, args, work):
    """Starts n processes of a variant at once; returns each one's result dict (first_from_start_ms, and for
    paskdnn's children their phases)."""
    t0 = time.time()
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(t0))
    env.pop("PASKDNN_HINTS", None)
    procs, outs = [], []
    for i in range(n):
        out = os.path.join(work, f"{variant}-{n}-{i}.json")
        cache = tempfile.mkdtemp(prefix="cache-", dir=work)  # every replica starts with an empty user cache
        if variant == "torch":
            cmd = [sys.executable, "-c", CHILD_TORCH, args.model, args.device, args.dtype, out]
        else:
            cmd = [sys.executable, "-m", "paskdnn", "coldstart-child", "--model", args.model, "--device", args.device,
                   "--policy", "pask", "--cache-dir", cache, "--layout", args.layout, "--dtype", args.dtype,
                   "--steady", "1", "--json-out", out]
            if variant == "bundle":
                cmd += ["--bundle", os.path.abspath(args.bundle)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        outs.append(out)
    results = []
    for p, out in zip(procs, outs):
        _, err = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            raise RuntimeError(f"a {variant} process failed (exit {p.returncode}): {err[-2000:]}")
        with open(out) as f:
            results.append(json.load(f))
    return results


PHASES = ("import", "context+load", "model ready", "first result")


def phases(results):
    """Medians of the children's phases, each as ms from the common start; {} for PyTorch's children."""
    if not all("import_ms" in r for r in results):
        return {}
    med = lambda xs: statistics.median(xs)  # noqa: E731
    return {"import": med([r["import_ms"] for r in results]),
            "context+load": med([r["import_ms"] + r["context_ms"] for r in results]),
            "model ready": med([r["model_ready_ms"] for r in results]),
            "first result": med([r["first_from_start_ms"] for r in results])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50", help="zoo model (default: %(default)s)")
    ap.add_argument("--bundle", required=True, help="the model's bundle (python -m paskdnn precompile)")
    ap.add_argument("--device", default="cuda", help="cuda or cpu (default: %(default)s)")
    ap.add_argument("--dtype", default="", help="default: float16 on cuda, float32 on cpu")
    ap.add_argument("--layout", default="NHWC")
    ap.add_argument("--n", default="1,4,8,16", help="process counts (default: %(default)s)")
    ap.add_argument("--variants", default="bundle,plain,torch", help="bundle, plain, torch (default: %(default)s)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per process")
    ap.add_argument("--out", default="fleet-results")
    args = ap.parse_args()
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    counts = [int(v) for v in args.n.split(",")]
    variants = args.variants.split(",")
    if "torch" in variants:
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError:
            print("fleet: torch/torchvision not installed: the PyTorch variant is left out", file=sys.stderr)
            variants.remove("torch")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="paskdnn-fleet-") as work:
        for n in counts:
            for v in variants:
                res = launch(n, v, args, work)
                t = [r["first_from_start_ms"] for r in res]
                compiles = [r["stats"]["compiles"] for r in res if "stats" in r]  # NVRTC compiles before the first result
                rows.append(dict(n=n, variant=v, last_ms=max(t), first_ms=min(t), each_ms=t, phases_ms=phases(res),
                                 max_compiles=max(compiles) if compiles else None))
                print(f"  N={n:>2} {v:<6} last first result {max(t):8.1f} ms (fastest {min(t):8.1f} ms)", flush=True)
    doc = dict(model=args.model, device=args.device, dtype=args.dtype, layout=args.layout, date=time.strftime("%Y-%m-%d"),
               command=" ".join([os.path.basename(sys.executable), *sys.argv]), rows=rows)
    with open(os.path.join(args.out, "fleet.json"), "w") as f:
        json.dump(doc, f, indent=1)
    lines = [f"# Fleet cold start: {args.model} on {args.device}, {args.dtype} {args.layout}", "",
             f"{doc['date']}; command: `{doc['command']}`. Time from the common start of N processes to the last "
             f"one's first result (ms).", "", "| N | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for i in range(len(counts)):  # row i: the i-th count of --n (a count may be given more than once)
        lines.append(f"| {counts[i]} | " + " | ".join(f"{rows[i * len(variants) + j]['last_ms']:.0f}"
                                                      for j in range(len(variants))) + " |")
    lines += ["", "Where paskdnn's processes spent it: medians over the N processes, each phase's end in ms from the "
              "common start (context+load: the device context, and with a bundle its load overlapped with it).", "",
              "| N | variant | " + " | ".join(PHASES) + " | NVRTC compiles (most in a process) |",
              "|---|---|" + "---|" * (len(PHASES) + 1)]
    for r in rows:
        if r["phases_ms"]:
            lines.append(f"| {r['n']} | {r['variant']} | " + " | ".join(f"{r['phases_ms'][name]:.0f}" for name in PHASES)
                         + f" | {r['max_compiles']} |")
    with open(os.path.join(args.out, "fleet.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fleet: matplotlib is not installed; no figure")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for j, v in enumerate(variants):  # rows are in --n order, variants within (a count may repeat)
        ax.plot(counts, [rows[i * len(variants) + j]["last_ms"] for i in range(len(counts))],
                "o-" if len(set(counts)) == len(counts) else "o",
                label=v)
    ax.set_xlabel("processes started at once")
    ax.set_ylabel("last first result (ms)")
    ax.set_title(f"{args.model}, {args.device}, {args.dtype}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "fleet.png"), dpi=120)


if __name__ == "__main__":
    main()

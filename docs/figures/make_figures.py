"""Draws the figures of docs/benchmarks.md from the benchmark results.

    python3 docs/figures/make_figures.py      (from the repository root; needs matplotlib)

Reads bench/results/gpu.json (bench/gpu_ops.py), bench/results/cudnn.json
(bench/cudnn_ops.py) and bench/results/cpu.json (bench/cpu_ops.py); writes
PNGs next to this script. The cold-start figures are the main job's own
(bench/results/coldstart/h100-*/), copied here. It only plots what the
JSON files hold: no number is typed in here.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent.parent / "bench" / "results"
PASK, TORCH, ALT = "#1f77b4", "#ff7f0e", "#7f7f7f"


def load(name):
    with open(RESULTS / name, encoding="utf-8") as f:
        return json.load(f)


def save(fig, name):
    fig.tight_layout()
    fig.savefig(HERE / name, dpi=110)
    plt.close(fig)
    print("wrote", HERE / name)


def gpu_totals(g):
    """Whole-model conv totals: paskdnn / PyTorch, eager and CUDA-graph replay."""
    rows = g["totals"]
    labels = [f"{t['model']} {t['dtype']} {t['layout']} b{t['batch']}" for t in rows]
    eager = [t["ours"] / t["torch"] for t in rows]
    graph = [t["ours_graph"] / t["torch_graph"] for t in rows]
    auto = [t["auto_graph"] / t["torch_graph"] if "auto_graph" in t else None for t in rows]
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    y = range(len(rows))
    ax.barh([i + 0.27 for i in y], graph, height=0.27, color=ALT, label="own kernels only, CUDA-graph replay")
    ax.barh([i for i in y], eager, height=0.27, color="#bbbbbb", label="own kernels only, eager")
    if any(a is not None for a in auto):
        ax.barh([i - 0.27 for i in y], [a or 0 for a in auto], height=0.27, color=PASK,
                label="default context (cuDNN included, device-timed choice), graph replay")
    for i, (e, gr, a) in enumerate(zip(eager, graph, auto)):
        ax.text(gr * 1.04, i + 0.27, f"{gr:.2f}x", va="center", fontsize=7)
        ax.text(e * 1.04, i, f"{e:.2f}x", va="center", fontsize=7, color="#444444")
        if a:
            ax.text(a * 1.04, i - 0.27, f"{a:.2f}x", va="center", fontsize=7, color=PASK)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("paskdnn time / PyTorch (cuDNN) time, log scale  (1 = parity, lower is better)")
    m = g["meta"]
    ax.set_title(f"Convolution totals per model, {m['card']}, {m['date']}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=7, ncol=2, frameon=False)
    ax.set_xlim(0.3, max(eager + graph) * 2.2)
    ax.set_xticks([0.3, 0.5, 1, 2, 3, 5])
    ax.set_xticklabels(["0.3", "0.5", "1", "2", "3", "5"])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    fig.subplots_adjust(bottom=0.2)
    save(fig, "gpu_model_totals.png")


def gpu_first_call(g):
    """First call per solver in a fresh cache: prebuilt cubin load vs NVRTC compile."""
    rows = g["first_call"]
    labels = [f"{r['solver']} {r['dtype']}" for r in rows]
    first = [r["first_call_ms"] for r in rows]
    comp = [r["compile_ms"] for r in rows]
    colors = [TORCH if r["compiles"] else PASK for r in rows]
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    y = range(len(rows))
    ax.barh(list(y), first, color=colors)
    for i, (f, c) in enumerate(zip(first, comp)):
        note = f"{f:.1f} ms" + (f"  (NVRTC {c:.1f} ms)" if c else "")
        ax.text(f * 1.1, i, note, va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0.2, max(first) * 400)
    ax.set_xlabel("first call, ms (log scale)")
    ax.set_title("First call per CUDA kernel, fresh user cache\n"
                 "blue: prebuilt cubin loaded; orange: compiled by NVRTC", fontsize=10)
    save(fig, "gpu_first_call.png")


def gpu_gemm_pool(g):
    """GEMM and pooling (eager): paskdnn / PyTorch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    gl = [f"{r['dtype']} {r['m']}x{r['n']}x{r['k']}" for r in g["gemm"]]
    graph = all(r.get("ours_graph_ms") and r.get("torch_graph_ms") for r in g["gemm"])
    gr = [r["ours_graph_ms"] / r["torch_graph_ms"] if graph else r["ours_ms"] / r["torch_ms"] for r in g["gemm"]]
    pl = [f"{r['op']} {r['dtype']} b{r['batch']}" for r in g["pool"]]
    pr = [r["ours_ms"] / r["torch_ms"] for r in g["pool"]]
    gtitle = "own GEMM kernel vs cuBLAS (torch.matmul), " + ("graph replay" if graph else "eager")
    for ax, labels, ratios, title in ((axes[0], gl, gr, gtitle),
                                      (axes[1], pl, pr, "Pooling vs PyTorch, eager")):
        y = range(len(labels))
        ax.barh(list(y), ratios, color=[PASK if r < 1 else ALT for r in ratios])
        for i, r in enumerate(ratios):
            ax.text(r + 0.08, i, f"{r:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="black", lw=1)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(ratios) * 1.25)
        ax.set_xlabel("paskdnn / PyTorch time (lower is better)", fontsize=9)
        ax.set_title(title, fontsize=10)
    save(fig, "gpu_gemm_pool.png")


def cudnn_parity(d):
    """The cuDNN provider vs cuDNN through PyTorch, per op (graph replay)."""
    rows = [r for r in d["parity"] if r["ours_graph_ms"] and r["torch_graph_ms"]]
    labels = [f"{r['op']} {r['shape']} {r['dtype']} b{r['batch']}" for r in rows]
    ratios = [r["ours_graph_ms"] / r["torch_graph_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(8.5, max(4.0, 0.16 * len(rows) + 1.2)))
    y = range(len(rows))
    ax.barh(list(y), ratios, color=[PASK if r <= 1.05 else TORCH for r in ratios])
    ax.axvline(1.0, color="black", lw=1)
    ax.axvline(1.05, color="black", lw=0.8, ls="--")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=5.5)
    ax.invert_yaxis()
    ax.set_xlabel("paskdnn cuDNN provider / PyTorch (cuDNN, benchmark mode), CUDA-graph replay; dashed: +5%")
    m = d["meta"]
    within = sum(r <= 1.05 for r in ratios)
    ax.set_title(f"cuDNN provider, {m['card']}, {m['date']}: {within} of {len(rows)} within 5% (blue)", fontsize=10)
    save(fig, "gpu_cudnn_parity.png")


def cpu(c):
    """CPU: GEMM GFLOP/s vs numpy and ResNet-50 conv totals vs PyTorch."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ax = axes[0]
    labels = [r["label"] for r in c["gemm"]]
    y = range(len(labels))
    ax.barh([i - 0.2 for i in y], [r["paskdnn_gflops"] for r in c["gemm"]], height=0.4, color=PASK,
            label="paskdnn.matmul")
    ax.barh([i + 0.2 for i in y], [r["numpy_gflops"] for r in c["gemm"]], height=0.4, color=ALT,
            label="numpy a @ b (OpenBLAS)")
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("GFLOP/s (higher is better)")
    ax.set_title("CPU GEMM, float32, 2 cores", fontsize=10)
    ax.set_xlim(0, max(r["paskdnn_gflops"] for r in c["gemm"]) * 1.7)
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1]
    names = {"paskdnn": "paskdnn NCHW", "torch": "torch NCHW", "paskdnn_nhwc": "paskdnn NHWC",
             "torch_cl": "torch channels_last", "im2col_numpy": "im2col + numpy"}
    keys = ["paskdnn", "torch", "paskdnn_nhwc", "torch_cl", "im2col_numpy"]
    vals = [c["conv"]["totals_ms"][k] for k in keys]
    colors = [PASK, TORCH, PASK, TORCH, ALT]
    ax.bar(range(len(keys)), vals, color=colors)
    for i, v in enumerate(vals):
        ax.text(i, v + 0.4, f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([names[k] for k in keys], fontsize=8, rotation=15)
    ax.set_ylabel("ms, sum over the 53 convs (lower is better)")
    ax.set_title("ResNet-50 convolutions, batch 1, float32", fontsize=10)
    ax.set_ylim(0, max(vals) * 1.15)
    save(fig, "cpu_gemm_resnet50.png")


def main():
    g = load("gpu.json")
    gpu_totals(g)
    gpu_first_call(g)
    gpu_gemm_pool(g)
    cudnn_parity(load("cudnn.json"))
    cpu(load("cpu.json"))


if __name__ == "__main__":
    main()

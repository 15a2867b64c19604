"""Peer comparison (device machine): the same torchvision model with the same
weights, run by PyTorch (cuDNN) and by paskdnn, each in fresh processes:
time to first inference, steady-state time, and agreement of outputs (max
relative error against PyTorch float32).

    python bench/peer_torch.py [--models resnet50,mobilenet_v2,vgg16,resnet18] [--repeats 2] [--out DIR]

paskdnn runs through ``python -m paskdnn coldstart-child`` (policy pask, cold
user cache); PyTorch through this script's --child mode. Both load the same
.npz (torchvision state_dict names), fp16, channels-last / NHWC, batch 1.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def torch_child(a):
    t_spawn = float(os.environ["PASKDNN_T_SPAWN"])
    import torch
    import torchvision

    t_import = time.time()
    model = getattr(torchvision.models, a.model)(weights=None)
    sd = np.load(a.weights)
    model.load_state_dict({k: torch.from_numpy(sd[k]) for k in sd.files}, strict=False)
    dt = torch.float16 if a.dtype == "float16" else torch.float32
    model = model.eval().to("cuda", dt).to(memory_format=torch.channels_last)
    x = torch.from_numpy(np.load(a.input)).to("cuda", dt).to(memory_format=torch.channels_last)
    torch.cuda.synchronize()
    t_ready = time.time()
    with torch.no_grad():
        y = model(x)
        torch.cuda.synchronize()
        t_first = time.time()
        steady = []
        for _ in range(10):
            t0 = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            steady.append((time.perf_counter() - t0) * 1e3)
        ref = model.float()(x.float()).cpu().numpy()
    np.save(a.save_output, y.float().cpu().numpy())
    np.save(a.save_output + ".fp32.npy", ref)
    json.dump(dict(import_ms=(t_import - t_spawn) * 1e3, first_from_start_ms=(t_first - t_spawn) * 1e3,
                   first_from_ready_ms=(t_first - t_ready) * 1e3, steady_ms=statistics.median(steady)),
              open(a.json_out, "w"))


def run(cmd):
    env = dict(os.environ, PASKDNN_T_SPAWN=repr(time.time()))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--models", default="resnet50,mobilenet_v2,vgg16,resnet18")
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--weights")
    ap.add_argument("--input")
    ap.add_argument("--save-output")
    ap.add_argument("--json-out")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    if a.child:
        return torch_child(a)
    import paskdnn
    from paskdnn import models

    work = tempfile.mkdtemp()
    rows = []
    for name in a.models.split(","):
        wpath = os.path.join(work, f"{name}.npz")
        models.save_npz(models.state_dict(name, seed=0), wpath)
        x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
        np.save(os.path.join(work, "x_nchw.npy"), x)
        res = {"torch": [], "paskdnn": []}
        for rep in range(a.repeats):
            tj, to = os.path.join(work, f"t{rep}.json"), os.path.join(work, f"t{rep}.npy")
            run([sys.executable, __file__, "--child", "--model", name, "--dtype", a.dtype, "--weights", wpath,
                 "--input", os.path.join(work, "x_nchw.npy"), "--save-output", to, "--json-out", tj])
            res["torch"].append(json.load(open(tj)))
            pj, po = os.path.join(work, f"p{rep}.json"), os.path.join(work, f"p{rep}.npy")
            run([sys.executable, "-m", "paskdnn", "coldstart-child", "--model", name, "--device", "cuda", "--policy",
                 "pask", "--cache-dir", os.path.join(work, f"cache-{name}-{rep}"), "--layout", "NHWC", "--dtype",
                 a.dtype, "--weights", wpath, "--input", os.path.join(work, "x_nchw.npy"), "--save-output", po,
                 "--json-out", pj])
            res["paskdnn"].append(json.load(open(pj)))
        ref = np.load(to + ".fp32.npy").astype(np.float64)
        ours = np.load(po).reshape(ref.shape).astype(np.float64)
        theirs = np.load(to).astype(np.float64)
        scale = np.abs(ref).max()
        row = dict(model=name, dtype=a.dtype)
        for who in ("torch", "paskdnn"):
            for k in ("first_from_start_ms", "first_from_ready_ms", "steady_ms"):
                row[f"{who}_{k}"] = statistics.median(r[k] for r in res[who])
        row["paskdnn_max_rel_err_vs_torch_fp32"] = float(np.abs(ours - ref).max() / scale)
        row["torch_max_rel_err_vs_torch_fp32"] = float(np.abs(theirs - ref).max() / scale)
        rows.append(row)
        print(json.dumps(row), flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "peer_torch.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())

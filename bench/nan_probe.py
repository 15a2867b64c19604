"""Device machine: where cuDNN's fp16 convolution disagrees with the float64
reference on Inf inputs (tests/test_cuda.py::test_conv_solvers_propagate_nan_and_inf),
printed as (got, want) pairs by category."""
import sys

import numpy as np
import torch

import paskdnn

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "tests")
from nan_reference import conv_ref, sprinkle  # noqa: E402

rng = np.random.default_rng(5)
for solver in ("conv2d.cudnn", "conv2d.cuda_igemm"):
    ctx = paskdnn.Context("cuda", solvers=[solver])
    a = sprinkle(rng, rng.uniform(-1, 1, size=(2, 16, 9, 9)).astype(np.float32), "mixed", 0.04)
    x = torch.from_numpy(a).to("cuda", torch.float16)
    w = torch.from_numpy(rng.uniform(-1, 1, size=(24, 16, 3, 3)).astype(np.float32)).to("cuda", torch.float16)
    b = torch.from_numpy(rng.uniform(-1, 1, size=(24,)).astype(np.float32)).to("cuda", torch.float16)
    y = paskdnn.conv2d(x, w, b, 1, 1, context=ctx)
    torch.cuda.synchronize()
    got = y.to("cpu", torch.float64).numpy()
    want = conv_ref(x.cpu().double().numpy(), w.cpu().double().numpy(), b.cpu().double().numpy(), 1, 1, 1, None)
    inf_w, inf_g = np.isinf(want), np.isinf(got)
    bad = inf_w != inf_g
    print(solver, paskdnn.last_solver(), "nan equal:", bool((np.isnan(got) == np.isnan(want)).all()),
          "inf mismatches:", int(bad.sum()), "of", int(inf_w.sum()), "infs in the reference")
    idx = np.argwhere(bad)[:8]
    for i in idx:
        t = tuple(i)
        print("   at", t, "got", got[t], "want", want[t])
    # torch's own cuDNN on the same inputs
    ref_t = torch.nn.functional.conv2d(x, w, b, 1, 1).to("cpu", torch.float64).numpy()
    print("   torch fp16 conv agrees with paskdnn at those points:",
          [bool(np.isclose(ref_t[tuple(i)], got[tuple(i)], equal_nan=True)) for i in idx])
    ctx.close()

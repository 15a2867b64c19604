"""The float32_precision context option: "high" (float32 conv2d and gemm as
TF32 on a GPU, the default) and "highest" (full float32: 3xTF32 on paskdnn's
own kernels). CPU contexts compute in float32 whatever the option says; the
GPU tests compare both settings with a float64 reference."""
import numpy as np
import pytest

import paskdnn
from reference import assert_within_bound, conv2d_bound, conv2d_ref, linear_bound, linear_ref


def test_the_option_takes_high_or_highest():
    for value in ("high", "highest"):
        paskdnn.Context("cpu", float32_precision=value).close()
    with pytest.raises(ValueError, match="float32_precision must be 'high'.*'highest'.*got 'max'"):
        paskdnn.Context("cpu", float32_precision="max")
    with pytest.raises(TypeError, match="float32_precision"):
        paskdnn.Context("cpu", float32_precision=True)


def test_cpu_contexts_compute_float32_either_way():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 6, 7, 7)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    for value in ("high", "highest"):
        ctx = paskdnn.Context("cpu", float32_precision=value)
        y = paskdnn.conv2d(x, w, b, padding=1, context=ctx)
        assert_within_bound(y, conv2d_ref(x, w, b, padding=1), conv2d_bound(x, w, b, padding=1), what=value)
        a, m = x.reshape(6, -1), w.reshape(4, -1)[:, :49].copy()
        z = paskdnn.linear(a, m, b, context=ctx)
        assert_within_bound(z, linear_ref(a, m, b), linear_bound(a, m, b), what=value)
        ctx.close()


# ---- on a GPU ---------------------------------------------------------------------


def _gpu():
    if paskdnn.device_count("cuda") == 0:
        pytest.skip("no CUDA device")
    torch = pytest.importorskip("torch", reason="the GPU tests move arrays with torch")
    if not torch.cuda.is_available():
        pytest.skip("torch does not see the CUDA device")
    return torch


def _worst(y, ref, bound):
    """The largest error as a fraction of the element's bound (sum of |terms|)."""
    return float(np.max(np.abs(y.astype(np.float64) - ref) / bound))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_highest_is_float32_exact_and_high_is_tf32_on_a_gpu(tmp_path, layout):
    torch = _gpu()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 128, 12, 12)).astype(np.float32)
    w = rng.standard_normal((64, 128, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    ref, bound = conv2d_ref(x, w, b, padding=1, activation="relu"), conv2d_bound(x, w, b, padding=1)
    a = rng.standard_normal((48, 2048)).astype(np.float32)
    m = rng.standard_normal((96, 2048)).astype(np.float32)
    c = rng.standard_normal(96).astype(np.float32)
    lref, lbound = linear_ref(a, m, c), linear_bound(a, m, c)
    worst = {}
    for value in ("high", "highest"):
        ctx = paskdnn.Context("cuda", cache_dir=str(tmp_path / value), float32_precision=value)
        if True:  # one block per setting
            xt = torch.from_numpy(x).cuda()
            wt = torch.from_numpy(w).cuda()
            if layout == "NHWC":
                xt, wt = xt.permute(0, 2, 3, 1).contiguous(), wt.permute(0, 2, 3, 1).contiguous()
            y = paskdnn.conv2d(xt, wt, torch.from_numpy(b).cuda(), padding=1, activation="relu", layout=layout,
                               weight_layout="OIHW" if layout == "NCHW" else "OHWI", context=ctx)
            conv_solver = paskdnn.last_solver()
            y = y.cpu().numpy()
            if layout == "NHWC":
                y = y.transpose(0, 3, 1, 2)
            z = paskdnn.linear(torch.from_numpy(a).cuda(), torch.from_numpy(m).cuda(), torch.from_numpy(c).cuda(),
                               context=ctx)
            gemm_solver = paskdnn.last_solver()
            worst[value] = (_worst(y, ref, bound), _worst(z.cpu().numpy(), lref, lbound))
            if value == "highest":
                assert "cudnn" not in conv_solver and "cudnn" not in gemm_solver, (conv_solver, gemm_solver)
        ctx.close()
    # float32 rounding of a sum of k terms stays far below 1e-5 of the bound;
    # TF32's 10-bit mantissas leave about 1e-3 of it
    assert worst["highest"][0] < 2e-6 and worst["highest"][1] < 2e-6, worst
    assert worst["high"][0] > 10 * worst["highest"][0] and worst["high"][1] > 10 * worst["highest"][1], worst

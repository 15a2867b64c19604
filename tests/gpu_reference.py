"""Float64 references and tolerances shared by the GPU tests (test_cuda.py,
test_cudnn.py): PyTorch in float64 is the independent reference, on the CPU,
or on the GPU (device="cuda") for the layers too large for the CPU in a test's time."""
import torch

F = torch.nn.functional
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# relative Frobenius error allowed per dtype (float32 runs on TF32 tensor cores)
TOL = {"float32": 3e-3, "float16": 4e-3, "bfloat16": 2e-2}


def rel_err(out, ref):
    out = out.detach().to(getattr(ref, "device", "cpu"), torch.float64)
    assert torch.isfinite(out).all(), "non-finite output"
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-30))


def ref_conv(x, w, b, stride, pad, dil, groups, layout, residual=None, act=None, device="cpu"):
    """act(conv(x, w) + b + residual) in float64 on device; pad = ((top, bottom), (left, right))."""
    xd = x.to(device, torch.float64)
    wd = w.to(device, torch.float64)
    if layout == "NHWC":
        xd = xd.permute(0, 3, 1, 2)
    (pt, pb), (pl, pr) = pad
    xd = F.pad(xd, (pl, pr, pt, pb))
    y = F.conv2d(xd, wd, None if b is None else b.to(device, torch.float64), stride, 0, dil, groups)
    if layout == "NHWC":
        y = y.permute(0, 2, 3, 1)
    if residual is not None:
        y = y + residual.to(device, torch.float64)
    if act == "relu":
        y = y.clamp_min(0)
    elif act == "relu6":
        y = y.clamp(0, 6)
    return y

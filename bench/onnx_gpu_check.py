"""Device machine (torch + torchvision there): torchvision classification CNNs
exported to ONNX, imported with paskdnn.load_onnx and run on the GPU, fp32
NCHW and fp16 NHWC, against PyTorch (fp32 with TF32 off; fp16 channels_last).

    python3 bench/onnx_gpu_check.py [--models resnet50 mobilenet_v2 ...] [--out FILE.md]

fp32: the relative max error against PyTorch fp32 (aim <= 1e-4), on a context
with float32_precision "high" (TF32, the default) and "highest" (full float32,
3xTF32). fp16: paskdnn's
relative max error against PyTorch fp32, beside PyTorch fp16's own (aim: at
most 2x PyTorch's). Models the importer refuses are listed with its message.
"""
import argparse
import io
import time

import numpy as np
import torch
import torchvision

import paskdnn
from paskdnn.graph import Runner


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2", "vgg16_bn", "resnext50_32x4d",
                                                    "googlenet", "efficientnet_b0", "mobilenet_v3_large",
                                                    "regnet_y_400mf", "densenet121", "squeezenet1_1", "mnasnet1_0",
                                                    "efficientnet_v2_s", "shufflenet_v2_x1_0"])
    ap.add_argument("--out", help="also write the table here (Markdown)")
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    ctx = paskdnn.Context("cuda")
    exact = paskdnn.Context("cuda", float32_precision="highest")
    for name in args.models:
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, opset_version=17, dynamo=False, do_constant_folding=True)
        with torch.no_grad():
            want = model.cuda()(x.cuda()).double().cpu().numpy()
            half = model.half().to(memory_format=torch.channels_last)
            torch_fp16 = half(x.cuda().half().to(memory_format=torch.channels_last)).double().cpu().numpy()
        try:
            errs = {}
            g = paskdnn.load_onnx(buf.getvalue(), layout="NCHW", dtype="float32")
            r = Runner(g, exact)
            errs["highest"] = rel(g.output_to_onnx(r.run(g.input_from_onnx(x.numpy()))).astype(np.float64), want)
            for layout, dtype in (("NCHW", "float32"), ("NHWC", "float16")):
                g = paskdnn.load_onnx(buf.getvalue(), layout=layout, dtype=dtype)
                r = Runner(g, ctx)
                y = g.output_to_onnx(r.run(g.input_from_onnx(x.numpy()))).astype(np.float64)
                errs[dtype] = rel(y, want)
                t0 = time.perf_counter()
                for _ in range(20):
                    r.run(r.input(g.input_from_onnx(x.numpy())), record=False)
                ctx.synchronize()
                errs[dtype + "_ms"] = (time.perf_counter() - t0) / 20 * 1e3
            rows.append(f"| {name} | {errs['highest']:.2e} | {errs['float32']:.2e} | {errs['float16']:.2e} | "
                        f"{rel(torch_fp16, want):.2e} | {errs['float16_ms']:.2f} | runs |")
        except paskdnn.UnsupportedError as e:
            rows.append(f"| {name} | - | - | - | {rel(torch_fp16, want):.2e} | - | refused: {str(e)[:90]} |")
        print(rows[-1], flush=True)
    head = ("| model | paskdnn fp32 NCHW, float32_precision highest, vs torch fp32 | paskdnn fp32 NCHW (TF32, default) "
            "vs torch fp32 | paskdnn fp16 NHWC vs torch fp32 | torch fp16 vs torch fp32 "
            "| paskdnn fp16 ms/inference (host loop, incl. upload) | |\n|---|---|---|---|---|---|---|\n")
    if args.out:
        open(args.out, "w").write(f"# ONNX import on the GPU\n\n{torch.cuda.get_device_name()}, torch {torch.__version__}, "
                                  f"`python3 bench/onnx_gpu_check.py`\n\n" + head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()

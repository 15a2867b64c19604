#include "problem.hpp"

#include <cstdio>

#include "tensor.hpp"

namespace pask {

int64_t dtype_size(pask_dtype_t dtype) {
    switch (dtype) {
    case PASK_DTYPE_FLOAT32: return 4;
    case PASK_DTYPE_FLOAT16: return 2;
    case PASK_DTYPE_BFLOAT16: return 2;
    case PASK_DTYPE_FLOAT64: return 8;
    }
    return 0;
}

const char *dtype_name(pask_dtype_t dtype) {
    switch (dtype) {
    case PASK_DTYPE_FLOAT32: return "float32";
    case PASK_DTYPE_FLOAT16: return "float16";
    case PASK_DTYPE_BFLOAT16: return "bfloat16";
    case PASK_DTYPE_FLOAT64: return "float64";
    }
    return "?";
}

const char *layout_name(pask_layout_t layout) {
    switch (layout) {
    case PASK_LAYOUT_ROW_MAJOR: return "row_major";
    case PASK_LAYOUT_NCHW: return "NCHW";
    case PASK_LAYOUT_NHWC: return "NHWC";
    }
    return "?";
}

const char *op_name(pask_op_t op) {
    switch (op) {
    case PASK_OP_CONV2D: return "conv2d";
    case PASK_OP_GEMM: return "gemm";
    case PASK_OP_POOL2D: return "pool2d";
    }
    return "?";
}

const char *device_name(pask_device_type_t device) {
    switch (device) {
    case PASK_DEVICE_CPU: return "cpu";
    case PASK_DEVICE_CUDA: return "cuda";
    case PASK_DEVICE_HIP: return "hip";
    }
    return "?";
}

std::string Bucket::str() const {
    char buf[128];
    std::snprintf(buf, sizeof buf, "%s:%d/%s/%s/%s", device_name(device), device_index, op_name(op),
                  layout_name(layout), dtype_name(dtype));
    return buf;
}

std::vector<int64_t> Problem::fields() const {
    std::vector<int64_t> f = {op, device, device_index, dtype, layout, weight_layout};
    switch (op) {
    case PASK_OP_CONV2D:
        f.insert(f.end(), {n, c, h, w, o, oh, ow, kh, kw, stride[0], stride[1], pad_pre[0], pad_pre[1],
                           pad_post[0], pad_post[1], dilation[0], dilation[1], groups, has_bias,
                           has_residual, has_beta, activation});
        break;
    case PASK_OP_POOL2D:
        f.insert(f.end(), {n, c, h, w, oh, ow, kh, kw, stride[0], stride[1], pad_pre[0], pad_pre[1],
                           pad_post[0], pad_post[1], dilation[0], dilation[1], pool_mode, ceil_mode,
                           count_include_pad, divisor_override});
        break;
    case PASK_OP_GEMM:
        f.insert(f.end(), {trans_a, trans_b, gm, gn, gk, lda, ldb, ldc, has_bias, has_beta, activation});
        break;
    }
    return f;
}

size_t Problem::hash() const {
    // FNV-1a over the canonical fields.
    uint64_t h64 = 1469598103934665603ull;
    for (int64_t v : fields()) {
        uint64_t x = static_cast<uint64_t>(v);
        for (int i = 0; i < 8; ++i) {
            h64 ^= (x >> (8 * i)) & 0xff;
            h64 *= 1099511628211ull;
        }
    }
    return static_cast<size_t>(h64);
}

std::string Problem::str() const {
    char buf[512];
    switch (op) {
    case PASK_OP_CONV2D:
        std::snprintf(buf, sizeof buf,
                      "conv2d %s %s x=[%lld,%lld,%lld,%lld] w=[%lld,%lld,%lld,%lld] y=[%lld,%lld,%lld,%lld] "
                      "stride=%lldx%lld pad=(%lld,%lld,%lld,%lld) dil=%lldx%lld groups=%lld%s%s act=%d",
                      dtype_name(dtype), layout_name(layout), (long long)n, (long long)c, (long long)h,
                      (long long)w, (long long)o, (long long)(c / groups), (long long)kh, (long long)kw,
                      (long long)n, (long long)o, (long long)oh, (long long)ow, (long long)stride[0],
                      (long long)stride[1], (long long)pad_pre[0], (long long)pad_post[0],
                      (long long)pad_pre[1], (long long)pad_post[1], (long long)dilation[0],
                      (long long)dilation[1], (long long)groups, has_bias ? " bias" : "",
                      has_residual ? " residual" : "", int(activation));
        break;
    case PASK_OP_POOL2D:
        std::snprintf(buf, sizeof buf,
                      "pool2d %s %s %s x=[%lld,%lld,%lld,%lld] k=%lldx%lld stride=%lldx%lld -> %lldx%lld",
                      pool_mode == PASK_POOL_MAX ? "max" : "avg", dtype_name(dtype), layout_name(layout),
                      (long long)n, (long long)c, (long long)h, (long long)w, (long long)kh, (long long)kw,
                      (long long)stride[0], (long long)stride[1], (long long)oh, (long long)ow);
        break;
    case PASK_OP_GEMM:
        std::snprintf(buf, sizeof buf, "gemm %s m=%lld n=%lld k=%lld trans=%d%d%s act=%d", dtype_name(dtype),
                      (long long)gm, (long long)gn, (long long)gk, trans_a, trans_b, has_bias ? " bias" : "",
                      int(activation));
        break;
    }
    return buf;
}

double Problem::flops() const {
    switch (op) {
    case PASK_OP_CONV2D:
        return 2.0 * double(n) * double(o) * double(oh) * double(ow) * double(c / groups) * double(kh) *
               double(kw);
    case PASK_OP_GEMM: return 2.0 * double(gm) * double(gn) * double(gk);
    case PASK_OP_POOL2D: return double(n) * double(c) * double(oh) * double(ow) * double(kh) * double(kw);
    }
    return 0;
}

}  // namespace pask

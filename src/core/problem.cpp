#include "problem.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "error.hpp"
#include "tensor.hpp"

namespace pask {

int64_t float_bits(float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    return int64_t(u);
}

float bits_float(int64_t b) {
    const uint32_t u = uint32_t(b);
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

bool gpu_float(const Problem &p, pask_device_type_t device) {
    return p.device == device &&
           (p.dtype == PASK_DTYPE_FLOAT32 || p.dtype == PASK_DTYPE_FLOAT16 || p.dtype == PASK_DTYPE_BFLOAT16);
}

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

void broadcast_strides(const int64_t d[4], pask_layout_t layout, int64_t out[4]) {
    int64_t s[4];
    if (layout == PASK_LAYOUT_NHWC) {
        s[1] = 1; s[3] = d[1]; s[2] = d[3] * d[1]; s[0] = d[2] * d[3] * d[1];
    } else {
        s[3] = 1; s[2] = d[3]; s[1] = d[2] * d[3]; s[0] = d[1] * d[2] * d[3];
    }
    for (int i = 0; i < 4; ++i) out[i] = d[i] == 1 ? 0 : s[i];
}

const char *op_name(pask_op_t op) {
    switch (op) {
    case PASK_OP_CONV2D: return "conv2d";
    case PASK_OP_GEMM: return "gemm";
    case PASK_OP_POOL2D: return "pool2d";
    case PASK_OP_ELTWISE: return "eltwise";
    case PASK_OP_CAT: return "cat";
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

template <typename F>
void Problem::each_field(F &&f) const {
    for (int64_t v : {int64_t(op), int64_t(device), int64_t(device_index),
                      int64_t(dtype) | (full_fp32 ? kFullFp32Bit : 0), int64_t(layout), int64_t(weight_layout)})
        f(v);
    switch (op) {
    case PASK_OP_CONV2D:
        for (int64_t v : {n, c, h, w, o, oh, ow, kh, kw, stride[0], stride[1], pad_pre[0], pad_pre[1], pad_post[0],
                          pad_post[1], dilation[0], dilation[1], groups, int64_t(has_bias), int64_t(has_residual),
                          int64_t(has_beta), int64_t(activation), float_bits(act_params[0]),
                          float_bits(act_params[1])})
            f(v);
        break;
    case PASK_OP_POOL2D:
        for (int64_t v : {n, c, h, w, oh, ow, kh, kw, stride[0], stride[1], pad_pre[0], pad_pre[1], pad_post[0],
                          pad_post[1], dilation[0], dilation[1], int64_t(pool_mode), int64_t(ceil_mode),
                          int64_t(count_include_pad), divisor_override})
            f(v);
        break;
    case PASK_OP_GEMM:
        for (int64_t v : {int64_t(trans_a), int64_t(trans_b), gm, gn, gk, lda, ldb, ldc, int64_t(has_bias),
                          int64_t(has_beta), int64_t(activation), float_bits(act_params[0]),
                          float_bits(act_params[1])})
            f(v);
        break;
    case PASK_OP_ELTWISE:
        for (int64_t v : {n, c, h, w, mdims[0], mdims[1], mdims[2], mdims[3], adims[0], adims[1], adims[2], adims[3],
                          int64_t(activation), float_bits(act_params[0]), float_bits(act_params[1])})
            f(v);
        break;
    case PASK_OP_CAT:
        for (int64_t v : {n, h, w, int64_t(cat_c.size())}) f(v);
        for (int64_t v : cat_c) f(v);
        break;
    }
}

std::vector<int64_t> Problem::fields() const {
    std::vector<int64_t> f;
    f.reserve(32);
    each_field([&](int64_t v) { f.push_back(v); });
    return f;
}

bool Problem::operator==(const Problem &other) const {
    // Field by field, without building the lists (every call compares one
    // Problem with its ranking's): the fixed part on the stack, a cat's
    // channel lists directly.
    if (op != other.op || cat_c != other.cat_c) return false;
    int64_t mine[32], theirs[32];
    size_t a = 0, b = 0;
    each_field([&](int64_t v) { if (a < 32) mine[a++] = v; });
    other.each_field([&](int64_t v) { if (b < 32) theirs[b++] = v; });
    return a == b && std::equal(mine, mine + a, theirs);
}

namespace {

// Reads a problem record's fields in order, each checked against its range;
// any failure is an InvalidArgument naming the field.
struct FieldReader {
    const std::vector<int64_t> &f;
    size_t i = 6;  // the six fields every record starts with are read by from_fields
    static constexpr int64_t big = int64_t(1) << 40;

    [[noreturn]] static void bad(const std::string &why) {
        fail(PASK_ERROR_INVALID_ARGUMENT, "bad problem record: " + why);
    }
    static int64_t in(int64_t v, int64_t lo, int64_t hi, const char *what) {
        if (v < lo || v > hi) bad(std::string(what) + " out of range");
        return v;
    }
    int64_t next(int64_t lo, int64_t hi, const char *what) { return in(f[i++], lo, hi, what); }
    int64_t dim(const char *what) { return next(1, big, what); }
    int64_t nonneg(const char *what) { return next(0, big, what); }
    int64_t flag(const char *what) { return next(0, 1, what); }

    void activation(Problem &p) {  // the activation and its two parameters (float bits)
        p.activation = static_cast<pask_activation_t>(next(0, kLastActivation, "activation"));
        for (float &v : p.act_params) {
            const int64_t b = f[i++];
            if (b < 0 || b > 0xffffffffll) bad("activation parameter out of range");
            v = bits_float(b);
            if (v != v) bad("activation parameter is NaN");
        }
    }
    // conv2d and pool2d: n c h w, then (conv2d) o, then oh ow kh kw, strides, pads, dilations
    void window(Problem &p, bool conv) {
        p.n = dim("n"); p.c = dim("c"); p.h = dim("h"); p.w = dim("w");
        p.o = conv ? dim("o") : p.c;
        p.oh = dim("oh"); p.ow = dim("ow"); p.kh = dim("kh"); p.kw = dim("kw");
        p.stride[0] = dim("stride"); p.stride[1] = dim("stride");
        p.pad_pre[0] = nonneg("pad"); p.pad_pre[1] = nonneg("pad");
        p.pad_post[0] = nonneg("pad"); p.pad_post[1] = nonneg("pad");
        p.dilation[0] = dim("dilation"); p.dilation[1] = dim("dilation");
    }
    void conv2d(Problem &p) {
        window(p, true);
        p.groups = dim("groups");
        if (p.c % p.groups || p.o % p.groups) bad("groups must divide channels");
        p.has_bias = flag("has_bias"); p.has_residual = flag("has_residual"); p.has_beta = flag("has_beta");
        activation(p);
    }
    void pool2d(Problem &p) {
        window(p, false);
        p.pool_mode = static_cast<pask_pool_mode_t>(next(0, 1, "pool mode"));
        p.ceil_mode = static_cast<int>(flag("ceil_mode"));
        p.count_include_pad = static_cast<int>(flag("count_include_pad"));
        p.divisor_override = nonneg("divisor_override");
    }
    void eltwise(Problem &p) {
        p.n = dim("n"); p.c = dim("c"); p.h = dim("h"); p.w = dim("w"); p.o = p.c; p.oh = p.h; p.ow = p.w;
        const int64_t x[4] = {p.n, p.c, p.h, p.w};
        for (int64_t *d : {p.mdims, p.adims}) {
            for (int j = 0; j < 4; ++j) d[j] = nonneg("operand dim");
            const bool absent = d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == 0;
            for (int j = 0; j < 4 && !absent; ++j)
                if (d[j] != 1 && d[j] != x[j]) bad("operand dims must each be 1 or x's");
        }
        activation(p);
    }
    void cat(Problem &p) {
        p.n = dim("n"); p.h = dim("h"); p.w = dim("w"); p.oh = p.h; p.ow = p.w;
        ++i;  // the count, checked by from_fields
        int64_t total = 0;
        while (i < f.size()) {
            p.cat_c.push_back(dim("cat channels"));
            total += p.cat_c.back();
            if (total > big) bad("cat channels out of range");
        }
        p.c = p.o = total;
    }
    void gemm(Problem &p) {
        p.trans_a = static_cast<int>(flag("trans_a")); p.trans_b = static_cast<int>(flag("trans_b"));
        p.gm = dim("m"); p.gn = dim("n"); p.gk = dim("k");
        p.lda = dim("lda"); p.ldb = dim("ldb"); p.ldc = dim("ldc");
        p.has_bias = flag("has_bias"); p.has_beta = flag("has_beta");
        activation(p);
    }
};

}  // namespace

Problem Problem::from_fields(const std::vector<int64_t> &f) {
    using R = FieldReader;
    if (f.size() < 6) R::bad("too few fields");
    Problem p;
    p.op = static_cast<pask_op_t>(R::in(f[0], PASK_OP_CONV2D, PASK_OP_CAT, "op"));
    p.device = static_cast<pask_device_type_t>(R::in(f[1], PASK_DEVICE_CPU, PASK_DEVICE_HIP, "device"));
    p.device_index = static_cast<int>(R::in(f[2], 0, 1024, "device index"));
    p.full_fp32 = (f[3] & kFullFp32Bit) != 0;
    p.dtype = static_cast<pask_dtype_t>(R::in(f[3] & ~kFullFp32Bit, PASK_DTYPE_FLOAT32, PASK_DTYPE_FLOAT64, "dtype"));
    if (p.full_fp32 && (p.dtype != PASK_DTYPE_FLOAT32 || f[3] < 0)) R::bad("full float32 precision on a non-float32 dtype");
    p.layout = static_cast<pask_layout_t>(R::in(f[4], PASK_LAYOUT_ROW_MAJOR, PASK_LAYOUT_NHWC, "layout"));
    p.weight_layout = static_cast<pask_layout_t>(R::in(f[5], PASK_LAYOUT_ROW_MAJOR, PASK_LAYOUT_NHWC, "weight layout"));
    size_t want = p.op == PASK_OP_CONV2D ? 30 : p.op == PASK_OP_POOL2D ? 26 : p.op == PASK_OP_GEMM ? 19
                : p.op == PASK_OP_ELTWISE ? 21 : 10;
    if (p.op == PASK_OP_CAT) {
        if (f.size() < 10) R::bad("too few fields for cat");
        want = 10 + size_t(R::in(f[9], 1, kMaxCatInputs, "cat input count"));
    }
    if (f.size() != want) R::bad("expected " + std::to_string(want) + " fields for " + op_name(p.op));
    R r{f};
    switch (p.op) {
    case PASK_OP_CONV2D: r.conv2d(p); break;
    case PASK_OP_POOL2D: r.pool2d(p); break;
    case PASK_OP_ELTWISE: r.eltwise(p); break;
    case PASK_OP_CAT: r.cat(p); break;
    default: r.gemm(p); break;
    }
    return p;
}

size_t Problem::hash() const {
    // FNV-1a over the canonical fields.
    uint64_t h64 = 1469598103934665603ull;
    each_field([&](int64_t v) {
        uint64_t x = static_cast<uint64_t>(v);
        for (int i = 0; i < 8; ++i) {
            h64 ^= (x >> (8 * i)) & 0xff;
            h64 *= 1099511628211ull;
        }
    });
    return static_cast<size_t>(h64);
}

const char *Problem::dtype_text() const { return full_fp32 ? "float32(highest)" : dtype_name(dtype); }

std::string Problem::str() const {
    char buf[512];
    switch (op) {
    case PASK_OP_CONV2D:
        std::snprintf(buf, sizeof buf,
                      "conv2d %s %s x=[%lld,%lld,%lld,%lld] w=[%lld,%lld,%lld,%lld] y=[%lld,%lld,%lld,%lld] "
                      "stride=%lldx%lld pad=(%lld,%lld,%lld,%lld) dil=%lldx%lld groups=%lld%s%s act=%d",
                      dtype_text(), layout_name(layout), (long long)n, (long long)c, (long long)h,
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
                      pool_mode == PASK_POOL_MAX ? "max" : "avg", dtype_text(), layout_name(layout),
                      (long long)n, (long long)c, (long long)h, (long long)w, (long long)kh, (long long)kw,
                      (long long)stride[0], (long long)stride[1], (long long)oh, (long long)ow);
        break;
    case PASK_OP_GEMM:
        std::snprintf(buf, sizeof buf, "gemm %s m=%lld n=%lld k=%lld trans=%d%d%s act=%d", dtype_text(),
                      (long long)gm, (long long)gn, (long long)gk, trans_a, trans_b, has_bias ? " bias" : "",
                      int(activation));
        break;
    case PASK_OP_ELTWISE: {
        auto d4 = [](const int64_t *d) {
            if (!d[0]) return std::string("-");
            return "[" + std::to_string(d[0]) + "," + std::to_string(d[1]) + "," + std::to_string(d[2]) + "," +
                   std::to_string(d[3]) + "]";
        };
        std::snprintf(buf, sizeof buf, "eltwise %s %s x=[%lld,%lld,%lld,%lld] m=%s a=%s act=%d", dtype_text(),
                      layout_name(layout), (long long)n, (long long)c, (long long)h, (long long)w,
                      d4(mdims).c_str(), d4(adims).c_str(), int(activation));
        break;
    }
    case PASK_OP_CAT:
        std::snprintf(buf, sizeof buf, "cat %s %s n=%lld %zu inputs -> c=%lld %lldx%lld", dtype_text(),
                      layout_name(layout), (long long)n, cat_c.size(), (long long)o, (long long)h, (long long)w);
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
    case PASK_OP_ELTWISE: return double(n) * double(c) * double(h) * double(w);
    case PASK_OP_CAT: return 0;
    }
    return 0;
}

}  // namespace pask

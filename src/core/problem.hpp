// Problem: the canonical, owned, hashable description of one primitive call.
// Every key the core derives (Bucket, hint matching, recorded traces) comes from
// Problem::fields(), so a call is serialised in exactly one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paskdnn.h"

namespace pask {

// The category a Problem and a resident kernel are filed under.
struct Bucket {
    pask_device_type_t device = PASK_DEVICE_CPU;
    int device_index = 0;
    pask_op_t op = PASK_OP_CONV2D;
    pask_layout_t layout = PASK_LAYOUT_ROW_MAJOR;
    pask_dtype_t dtype = PASK_DTYPE_FLOAT32;

    bool operator==(const Bucket &o) const {
        return device == o.device && device_index == o.device_index && op == o.op &&
               layout == o.layout && dtype == o.dtype;
    }
    std::string str() const;
};

struct BucketHash {
    size_t operator()(const Bucket &b) const {
        return (size_t(b.device) * 131 + size_t(b.device_index)) * 131 * 131 * 131 +
               (size_t(b.op) * 131 + size_t(b.layout)) * 131 + size_t(b.dtype);
    }
};

// The highest pask_activation_t value (the enum is append-only: raise this with it).
constexpr int kLastActivation = PASK_ACTIVATION_CLAMP;

struct Problem {
    pask_op_t op = PASK_OP_CONV2D;
    pask_device_type_t device = PASK_DEVICE_CPU;
    int device_index = 0;
    pask_dtype_t dtype = PASK_DTYPE_FLOAT32;
    pask_layout_t layout = PASK_LAYOUT_ROW_MAJOR;         // activations (conv, pool)
    pask_layout_t weight_layout = PASK_LAYOUT_ROW_MAJOR;  // conv weights

    // conv2d and pool2d: input {n, c, h, w}, output {n, o, oh, ow} (o = c for pool)
    int64_t n = 0, c = 0, h = 0, w = 0, o = 0, oh = 0, ow = 0;
    int64_t kh = 0, kw = 0;
    int64_t stride[2] = {1, 1};
    int64_t pad_pre[2] = {0, 0};
    int64_t pad_post[2] = {0, 0};
    int64_t dilation[2] = {1, 1};
    int64_t groups = 1;

    // pool2d
    pask_pool_mode_t pool_mode = PASK_POOL_MAX;
    int ceil_mode = 0;
    int count_include_pad = 0;
    int64_t divisor_override = 0;

    // gemm: C(m x n) = op(A)(m x k) @ op(B)(k x n)
    int trans_a = 0, trans_b = 0;
    int64_t gm = 0, gn = 0, gk = 0;
    int64_t lda = 0, ldb = 0, ldc = 0;

    // eltwise: y = act(x * m + a) over x {n, c, h, w}; m and a broadcast to x.
    // Their logical dims, each equal to x's or 1; all 0 when absent.
    int64_t mdims[4] = {0, 0, 0, 0};
    int64_t adims[4] = {0, 0, 0, 0};
    float act_params[2] = {0.f, 0.f};  // LEAKY_RELU slope; CLAMP lo, hi (0 for the other activations)

    // cat: inputs {n, cat_c[i], h, w}, output {n, o = sum, h, w}
    std::vector<int64_t> cat_c;

    // epilogue (conv2d, gemm); activation also eltwise
    bool has_bias = false;
    bool has_residual = false;
    bool has_beta = false;  // beta != 0: the output is read
    pask_activation_t activation = PASK_ACTIVATION_NONE;

    // float32 on a GPU at full precision (the context's float32_precision
    // "highest"): no TF32 rounding of the operands. Always false on the CPU
    // (full precision there) and for the 16-bit dtypes. Serialised as
    // kFullFp32Bit in the dtype field.
    bool full_fp32 = false;

    Bucket bucket() const {
        return Bucket{device, device_index, op, op == PASK_OP_GEMM ? PASK_LAYOUT_ROW_MAJOR : layout, dtype};
    }

    // The canonical field list: hash, equality and serialisation all use it.
    std::vector<int64_t> fields() const;
    // The inverse of fields(), validated; throws pask::Error(PASK_ERROR_INVALID_ARGUMENT).
    static Problem from_fields(const std::vector<int64_t> &f);
    bool operator==(const Problem &other) const;
    size_t hash() const;
    std::string str() const;  // human-readable, for messages and traces
    // The dtype as str() names it: "float32(highest)" for full_fp32.
    const char *dtype_text() const;

    double flops() const;  // multiply-adds count twice

private:
    // Calls f(int64_t) on each canonical field in order (fields(), hash and
    // equality share it).
    template <typename F>
    void each_field(F &&f) const;
};

struct ProblemHash {
    size_t operator()(const Problem &p) const { return p.hash(); }
};

// The dtype field's flag for Problem::full_fp32 (above every pask_dtype_t value).
constexpr int64_t kFullFp32Bit = int64_t(1) << 8;

// The most inputs a cat Problem takes (a bound on records read from files).
constexpr int64_t kMaxCatInputs = 4096;

// Element strides, in logical (n, c, h, w) order, of a 4-D eltwise operand
// of dims d stored in layout, 0 along its dims of 1 (so that indexing it with
// x's coordinates broadcasts it).
void broadcast_strides(const int64_t d[4], pask_layout_t layout, int64_t out[4]);

// A float's bits as a Problem field, and back.
int64_t float_bits(float v);
float bits_float(int64_t b);

// p is for device and in one of the GPU solvers' dtypes (float32, float16, bfloat16).
bool gpu_float(const Problem &p, pask_device_type_t device);

const char *op_name(pask_op_t op);
const char *device_name(pask_device_type_t device);

}  // namespace pask

// The C API: argument validation, Problem construction and the exception
// boundary. Every entry point validates everything before anything is written.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "capture.hpp"
#include "context.hpp"
#include "device_setup.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "error.hpp"
#include "fsutil.hpp"
#include "json.hpp"
#include "problem.hpp"
#include "registry.hpp"
#include "sha256.hpp"
#include "tensor.hpp"

using pask::checked_add;
using pask::checked_mul;
using pask::fail;
using pask::Problem;
using pask::require;

namespace {

template <typename F>
pask_status_t guarded(F &&body) {
    try {
        pask::clear_last_error();
        body();
        return PASK_SUCCESS;
    } catch (const pask::Error &e) {
        pask::set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc &) {
        pask::set_last_error("out of host memory");
        return PASK_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        pask::set_last_error(std::string("internal error: ") + e.what());
        return PASK_ERROR_INTERNAL;
    } catch (...) {
        pask::set_last_error("internal error: unknown exception");
        return PASK_ERROR_INTERNAL;
    }
}

// The raw value of an enum argument. A C caller may pass any int where the
// header says an enum; loading an out-of-range value as the C++ enum type is
// undefined behaviour, so arguments are read as ints and checked first.
template <typename E>
int raw(const E &e) {
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized here");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

void need(const void *p, const char *what) {
    if (!p) fail(PASK_ERROR_NULL_POINTER, std::string(what) + " is NULL");
}

std::string dims_str(const pask_tensor_desc &d) {
    std::string s = "[";
    for (int i = 0; i < d.ndim; ++i) s += (i ? "," : "") + std::to_string(d.dims[i]);
    return s + "]";
}

bool valid_dtype(int v) { return v >= PASK_DTYPE_FLOAT32 && v <= PASK_DTYPE_FLOAT64; }
bool valid_layout(int v) { return v >= PASK_LAYOUT_ROW_MAJOR && v <= PASK_LAYOUT_NHWC; }

// The activation and its parameters into p (checked): LEAKY_RELU's slope,
// CLAMP's bounds; the others' parameters are ignored (and kept 0, so that they
// do not split Problems).
void set_activation(const pask_activation_t &act, const float *params, Problem &p) {
    const int a = raw(act);
    require(a >= PASK_ACTIVATION_NONE && a <= pask::kLastActivation, PASK_ERROR_INVALID_ARGUMENT,
            "unknown activation " + std::to_string(a) + " (pask_activation_t is 0.." +
                std::to_string(int(pask::kLastActivation)) + ")");
    p.activation = act;
    const float p0 = params[0], p1 = params[1];
    if (act == PASK_ACTIVATION_LEAKY_RELU) {
        require(std::isfinite(p0), PASK_ERROR_INVALID_ARGUMENT,
                "leaky_relu's negative_slope must be finite, got " + std::to_string(p0));
        p.act_params[0] = p0;
    } else if (act == PASK_ACTIVATION_CLAMP) {
        require(p0 == p0 && p1 == p1 && p0 <= p1, PASK_ERROR_INVALID_ARGUMENT,
                "clamp needs lo <= hi (not NaN), got " + std::to_string(p0) + ", " + std::to_string(p1));
        p.act_params[0] = p0;
        p.act_params[1] = p1;
    }
}

void check_4d(const pask_tensor_desc &d, const char *what) {
    require(d.ndim == 4 && (d.layout == PASK_LAYOUT_NCHW || d.layout == PASK_LAYOUT_NHWC),
            PASK_ERROR_INVALID_ARGUMENT,
            std::string(what) + " must be a 4-D NCHW or NHWC tensor, got " + std::to_string(d.ndim) + "-D " +
                pask::layout_name(d.layout));
}

// Byte ranges [p, p + n) overlap?
bool overlaps(const void *a, int64_t an, const void *b, int64_t bn) {
    auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
    return x < y + static_cast<uintptr_t>(bn) && y < x + static_cast<uintptr_t>(an);
}

void check_no_overlap(void *out, int64_t out_bytes, const void *in, int64_t in_bytes, const char *out_name,
                      const char *in_name) {
    if (in && overlaps(out, out_bytes, in, in_bytes))
        fail(PASK_ERROR_INVALID_ARGUMENT, std::string(out_name) + " overlaps " + in_name + " (in-place is not supported)");
}

void check_spatial(const int64_t stride[2], const int64_t pre[2], const int64_t post[2], const int64_t dil[2],
                   const char *op) {
    for (int i = 0; i < 2; ++i) {
        require(stride[i] >= 1, PASK_ERROR_INVALID_ARGUMENT,
                std::string(op) + " stride must be >= 1, got " + std::to_string(stride[i]));
        require(dil[i] >= 1, PASK_ERROR_INVALID_ARGUMENT,
                std::string(op) + " dilation must be >= 1, got " + std::to_string(dil[i]));
        require(pre[i] >= 0 && post[i] >= 0, PASK_ERROR_INVALID_ARGUMENT,
                std::string(op) + " padding must be >= 0, got " + std::to_string(pre[i]) + "/" + std::to_string(post[i]));
    }
}

// Fills p's conv fields from the descriptors; validates shapes.
void conv_problem(const pask_conv2d_params_t *params, const pask_tensor_desc *x, const pask_tensor_desc *w,
                  Problem &p) {
    need(params, "params");
    need(x, "x_desc");
    need(w, "w_desc");
    check_4d(*x, "x");
    check_4d(*w, "w");
    check_spatial(params->stride, params->pad_pre, params->pad_post, params->dilation, "conv2d");
    require(x->dtype == w->dtype, PASK_ERROR_INVALID_ARGUMENT,
            std::string("x is ") + pask::dtype_name(x->dtype) + " but w is " + pask::dtype_name(w->dtype));
    const int64_t g = params->groups;
    require(g >= 1, PASK_ERROR_INVALID_ARGUMENT, "groups must be >= 1, got " + std::to_string(g));
    p.op = PASK_OP_CONV2D;
    p.dtype = x->dtype;
    p.layout = x->layout;
    p.weight_layout = w->layout;
    p.n = x->dims[0]; p.c = x->dims[1]; p.h = x->dims[2]; p.w = x->dims[3];
    p.o = w->dims[0]; p.kh = w->dims[2]; p.kw = w->dims[3];
    require(p.c % g == 0, PASK_ERROR_SHAPE_MISMATCH,
            "groups=" + std::to_string(g) + " does not divide the " + std::to_string(p.c) + " input channels");
    require(p.o % g == 0, PASK_ERROR_SHAPE_MISMATCH,
            "groups=" + std::to_string(g) + " does not divide the " + std::to_string(p.o) + " output channels");
    require(w->dims[1] == p.c / g, PASK_ERROR_SHAPE_MISMATCH,
            "weight " + dims_str(*w) + " expects " + std::to_string(w->dims[1]) + " input channels per group, but x " +
                dims_str(*x) + " with groups=" + std::to_string(g) + " has " + std::to_string(p.c / g));
    p.groups = g;
    const int64_t k[2] = {p.kh, p.kw};
    const int64_t in[2] = {p.h, p.w};
    int64_t out[2];
    for (int i = 0; i < 2; ++i) {
        p.stride[i] = params->stride[i];
        p.pad_pre[i] = params->pad_pre[i];
        p.pad_post[i] = params->pad_post[i];
        p.dilation[i] = params->dilation[i];
        int64_t eff = checked_add(checked_mul(params->dilation[i], k[i] - 1, "dilated kernel"), 1, "dilated kernel");
        int64_t padded = checked_add(checked_add(in[i], params->pad_pre[i], "padded input"), params->pad_post[i],
                                     "padded input");
        require(eff <= padded, PASK_ERROR_SHAPE_MISMATCH,
                std::string("the dilated kernel (") + std::to_string(eff) + ") is larger than the padded input (" +
                    std::to_string(padded) + ") along " + (i == 0 ? "height" : "width"));
        out[i] = (padded - eff) / params->stride[i] + 1;
    }
    p.oh = out[0];
    p.ow = out[1];
    checked_mul(checked_mul(checked_mul(p.n, p.o, "output"), p.oh, "output"), checked_mul(p.ow, 8, "output"), "output");
}

void pool_problem(const pask_pool2d_params_t *params, const pask_tensor_desc *x, Problem &p) {
    need(params, "params");
    need(x, "x_desc");
    check_4d(*x, "x");
    require(raw(params->mode) == PASK_POOL_MAX || raw(params->mode) == PASK_POOL_AVG, PASK_ERROR_INVALID_ARGUMENT,
            "unknown pool mode " + std::to_string(raw(params->mode)));
    check_spatial(params->stride, params->pad_pre, params->pad_post, params->dilation, "pool2d");
    require(params->divisor_override >= 0, PASK_ERROR_INVALID_ARGUMENT,
            "divisor_override must be >= 0 (0 = none), got " + std::to_string(params->divisor_override));
    require(params->ceil_mode == 0 || params->ceil_mode == 1, PASK_ERROR_INVALID_ARGUMENT, "ceil_mode must be 0 or 1");
    require(params->count_include_pad == 0 || params->count_include_pad == 1, PASK_ERROR_INVALID_ARGUMENT,
            "count_include_pad must be 0 or 1");
    p.op = PASK_OP_POOL2D;
    p.dtype = x->dtype;
    p.layout = x->layout;
    p.n = x->dims[0]; p.c = x->dims[1]; p.h = x->dims[2]; p.w = x->dims[3];
    p.o = p.c;
    p.pool_mode = params->mode;
    p.ceil_mode = params->ceil_mode;
    p.count_include_pad = params->count_include_pad;
    p.divisor_override = params->divisor_override;
    const int64_t in[2] = {p.h, p.w};
    int64_t out[2];
    for (int i = 0; i < 2; ++i) {
        require(params->kernel[i] >= 1, PASK_ERROR_INVALID_ARGUMENT,
                "pool2d kernel must be >= 1, got " + std::to_string(params->kernel[i]));
        p.stride[i] = params->stride[i];
        p.pad_pre[i] = params->pad_pre[i];
        p.pad_post[i] = params->pad_post[i];
        p.dilation[i] = params->dilation[i];
        int64_t eff = checked_add(checked_mul(params->dilation[i], params->kernel[i] - 1, "dilated kernel"), 1,
                                  "dilated kernel");
        // Any padding ONNX allows, short of a window lying wholly in the padding:
        // with pad < eff the first and last windows reach into the input.
        require(params->pad_pre[i] < eff && params->pad_post[i] < eff, PASK_ERROR_INVALID_ARGUMENT,
                "pool2d padding must be smaller than the (dilated) kernel size " + std::to_string(eff) +
                    " (a window would lie wholly in the padding), got " + std::to_string(params->pad_pre[i]) + "/" +
                    std::to_string(params->pad_post[i]));
        int64_t padded = checked_add(checked_add(in[i], params->pad_pre[i], "padded input"), params->pad_post[i],
                                     "padded input");
        require(eff <= padded, PASK_ERROR_SHAPE_MISMATCH,
                std::string("the pool window (") + std::to_string(eff) + ") is larger than the padded input (" +
                    std::to_string(padded) + ") along " + (i == 0 ? "height" : "width"));
        int64_t span = padded - eff;
        // Divisions only: a stride near INT64_MAX (one output) overflows span + stride - 1.
        const int64_t s = params->stride[i];
        int64_t o = (params->ceil_mode ? (span == 0 ? 0 : (span - 1) / s + 1) : span / s) + 1;
        // ceil mode: the last window must start inside the input or its left padding,
        // (o - 1) * s < in + pad_pre, i.e. o - 1 <= (in + pad_pre - 1) / s
        if (params->ceil_mode && o - 1 > (in[i] + params->pad_pre[i] - 1) / s) --o;
        out[i] = o;
    }
    p.kh = params->kernel[0];
    p.kw = params->kernel[1];
    p.oh = out[0];
    p.ow = out[1];
}

void check_output(const pask_tensor_desc *y, const Problem &p, int64_t c_out) {
    need(y, "y_desc");
    check_4d(*y, "y");
    require(y->dtype == p.dtype, PASK_ERROR_INVALID_ARGUMENT,
            std::string("y is ") + pask::dtype_name(y->dtype) + " but x is " + pask::dtype_name(p.dtype));
    require(y->layout == p.layout, PASK_ERROR_INVALID_ARGUMENT,
            std::string("y is ") + pask::layout_name(y->layout) + " but x is " + pask::layout_name(p.layout));
    require(y->dims[0] == p.n && y->dims[1] == c_out && y->dims[2] == p.oh && y->dims[3] == p.ow,
            PASK_ERROR_SHAPE_MISMATCH,
            "y is " + dims_str(*y) + " but the output is [" + std::to_string(p.n) + "," + std::to_string(c_out) + "," +
                std::to_string(p.oh) + "," + std::to_string(p.ow) + "]");
}

// The whole conv2d Problem of a call or hint: shapes, epilogue, bias, residual.
void conv_call_problem(const pask_conv2d_params_t *params, const pask_epilogue_t *epilogue,
                       const pask_tensor_desc *x_desc, const pask_tensor_desc *w_desc,
                       const pask_tensor_desc *bias_desc, const pask_tensor_desc *residual_desc, Problem &p,
                       pask::OpArgs &args) {
    conv_problem(params, x_desc, w_desc, p);
    if (bias_desc) {
        require(bias_desc->ndim == 1 && bias_desc->dims[0] == p.o, PASK_ERROR_SHAPE_MISMATCH,
                "bias must be [" + std::to_string(p.o) + "], got " + dims_str(*bias_desc));
        require(bias_desc->dtype == p.dtype, PASK_ERROR_INVALID_ARGUMENT, "bias dtype differs from x");
    }
    if (residual_desc) {
        const int64_t want[4] = {p.n, p.o, p.oh, p.ow};
        require(residual_desc->ndim == 4 && std::memcmp(residual_desc->dims.data(), want, sizeof want) == 0,
                PASK_ERROR_SHAPE_MISMATCH,
                "residual must match the output [" + std::to_string(p.n) + "," + std::to_string(p.o) + "," +
                    std::to_string(p.oh) + "," + std::to_string(p.ow) + "], got " + dims_str(*residual_desc));
        require(residual_desc->layout == p.layout, PASK_ERROR_SHAPE_MISMATCH, "residual layout differs from x");
        require(residual_desc->dtype == p.dtype, PASK_ERROR_INVALID_ARGUMENT, "residual dtype differs from x");
    }
    if (epilogue) {
        set_activation(epilogue->activation, epilogue->activation_params, p);
        args.alpha = epilogue->alpha;
        args.beta = epilogue->beta;
    }
    p.has_bias = bias_desc != nullptr;
    p.has_residual = residual_desc != nullptr;
    p.has_beta = args.beta != 0.0f;
}

// The gemm Problem of a call or hint (no data pointers).
void gemm_problem(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  const pask_epilogue_t *epilogue, int64_t lda, int64_t ldb, int64_t ldc, bool has_bias, Problem &p,
                  pask::OpArgs &args) {
    require(valid_dtype(dtype), PASK_ERROR_INVALID_ARGUMENT, "unknown dtype " + std::to_string(dtype));
    require(m >= 1 && n >= 1 && k >= 1, PASK_ERROR_INVALID_ARGUMENT,
            "gemm sizes must be >= 1, got m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k));
    const int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    require(lda >= a_cols, PASK_ERROR_INVALID_ARGUMENT,
            "lda=" + std::to_string(lda) + " is smaller than A's row length " + std::to_string(a_cols));
    require(ldb >= b_cols, PASK_ERROR_INVALID_ARGUMENT,
            "ldb=" + std::to_string(ldb) + " is smaller than B's row length " + std::to_string(b_cols));
    require(ldc >= n, PASK_ERROR_INVALID_ARGUMENT,
            "ldc=" + std::to_string(ldc) + " is smaller than C's row length " + std::to_string(n));
    p.op = PASK_OP_GEMM;
    p.dtype = static_cast<pask_dtype_t>(dtype);
    p.trans_a = trans_a ? 1 : 0;
    p.trans_b = trans_b ? 1 : 0;
    p.gm = m; p.gn = n; p.gk = k;
    p.lda = lda; p.ldb = ldb; p.ldc = ldc;
    if (epilogue) {
        set_activation(epilogue->activation, epilogue->activation_params, p);
        args.alpha = epilogue->alpha;
        args.beta = epilogue->beta;
    }
    p.has_bias = has_bias;
    p.has_beta = args.beta != 0.0f;
}

// The eltwise Problem: x {N, C, H, W}, m and a (optional) broadcast to it.
void eltwise_problem(const pask_eltwise_params_t *params, const pask_tensor_desc *x, const pask_tensor_desc *m,
                     const pask_tensor_desc *a, Problem &p) {
    need(x, "x_desc");
    check_4d(*x, "x");
    if (params) set_activation(params->activation, params->params, p);
    p.op = PASK_OP_ELTWISE;
    p.dtype = x->dtype;
    p.layout = x->layout;
    p.n = x->dims[0]; p.c = x->dims[1]; p.h = x->dims[2]; p.w = x->dims[3];
    p.o = p.c; p.oh = p.h; p.ow = p.w;
    const char *names[2] = {"m", "a"};
    const pask_tensor_desc *ops[2] = {m, a};
    int64_t *dims[2] = {p.mdims, p.adims};
    for (int k = 0; k < 2; ++k) {
        const pask_tensor_desc *d = ops[k];
        if (!d) continue;
        require(d->ndim == 4, PASK_ERROR_SHAPE_MISMATCH,
                std::string(names[k]) + " must be 4-D (dims of 1 broadcast), got " + dims_str(*d));
        require(d->layout == x->layout, PASK_ERROR_INVALID_ARGUMENT,
                std::string(names[k]) + " is " + pask::layout_name(d->layout) + " but x is " +
                    pask::layout_name(x->layout));
        require(d->dtype == x->dtype, PASK_ERROR_INVALID_ARGUMENT,
                std::string(names[k]) + " is " + pask::dtype_name(d->dtype) + " but x is " +
                    pask::dtype_name(x->dtype));
        for (int j = 0; j < 4; ++j) {
            require(d->dims[j] == 1 || d->dims[j] == x->dims[j], PASK_ERROR_SHAPE_MISMATCH,
                    std::string(names[k]) + " " + dims_str(*d) + " does not broadcast to x " + dims_str(*x) +
                        ": each dim must be 1 or x's");
            dims[k][j] = d->dims[j];
        }
    }
}

// The cat Problem: count inputs {N, C_i, H, W} joined along C.
void cat_problem(int64_t count, const const_pask_tensor_desc_t *descs, Problem &p) {
    require(count >= 1 && count <= pask::kMaxCatInputs, PASK_ERROR_INVALID_ARGUMENT,
            "cat takes 1.." + std::to_string(pask::kMaxCatInputs) + " inputs, got " + std::to_string(count));
    need(descs, "x_descs");
    p.op = PASK_OP_CAT;
    p.cat_c.clear();
    int64_t total = 0;
    for (int64_t i = 0; i < count; ++i) {
        const pask_tensor_desc *d = descs[i];
        const std::string name = "cat input " + std::to_string(i);
        need(d, name.c_str());
        check_4d(*d, name.c_str());
        if (i == 0) {
            p.dtype = d->dtype;
            p.layout = d->layout;
            p.n = d->dims[0]; p.h = d->dims[2]; p.w = d->dims[3];
        } else {
            require(d->dtype == p.dtype, PASK_ERROR_INVALID_ARGUMENT,
                    name + " is " + pask::dtype_name(d->dtype) + " but input 0 is " + pask::dtype_name(p.dtype));
            require(d->layout == p.layout, PASK_ERROR_INVALID_ARGUMENT,
                    name + " is " + pask::layout_name(d->layout) + " but input 0 is " + pask::layout_name(p.layout));
            require(d->dims[0] == p.n && d->dims[2] == p.h && d->dims[3] == p.w, PASK_ERROR_SHAPE_MISMATCH,
                    name + " is " + dims_str(*d) + " but input 0 is " + dims_str(*descs[0]) +
                        ": cat joins channels, so N, H and W must agree");
        }
        p.cat_c.push_back(d->dims[1]);
        total = checked_add(total, d->dims[1], "cat channels");
    }
    p.c = p.o = total;
    p.oh = p.h;
    p.ow = p.w;
}

// ---- plans: validated once (prepare_*), executed with pointers (execute_plan) ----

void finish_plan(pask_plan &plan, pask_context *context) {
    plan.context = context;
    plan.problem.device = context->device_type;
    plan.problem.device_index = context->device_index;
    context->options.set_precision(plan.problem);
    plan.hash = plan.problem.hash();
}

// A prepared call's own parts (pask_plan_create_*; the eager entry points'
// one-call plans have neither): the decision its executions reuse, and the
// trace's text of its Problem made at set-up rather than in its first call.
void finish_prepared(pask_plan &plan) {
    plan.memo = std::make_unique<pask::DecisionMemo>();
    plan.context->dispatcher->prepare_trace_text(plan.problem, plan.hash);
}

void prepare_conv(pask_plan &plan, pask_context *context, const pask_conv2d_params_t *params,
                  const pask_epilogue_t *epilogue, const pask_tensor_desc *x_desc, const pask_tensor_desc *w_desc,
                  const pask_tensor_desc *bias_desc, const pask_tensor_desc *residual_desc,
                  const pask_tensor_desc *y_desc) {
    conv_call_problem(params, epilogue, x_desc, w_desc, bias_desc, residual_desc, plan.problem, plan.args);
    check_output(y_desc, plan.problem, plan.problem.o);
    plan.x_bytes = x_desc->bytes;
    plan.w_bytes = w_desc->bytes;
    plan.bias_bytes = bias_desc ? bias_desc->bytes : 0;
    plan.residual_bytes = residual_desc ? residual_desc->bytes : 0;
    plan.y_bytes = y_desc->bytes;
    finish_plan(plan, context);
}

void prepare_gemm(pask_plan &plan, pask_context *context, int dtype, int trans_a, int trans_b, int64_t m, int64_t n,
                  int64_t k, const pask_epilogue_t *epilogue, int64_t lda, int64_t ldb, int64_t ldc, bool has_bias) {
    gemm_problem(dtype, trans_a, trans_b, m, n, k, epilogue, lda, ldb, ldc, has_bias, plan.problem, plan.args);
    const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    const int64_t es = pask::dtype_size(static_cast<pask_dtype_t>(dtype));
    auto extent = [&](int64_t rows, int64_t cols, int64_t ld, const char *what) {
        int64_t e = checked_add(checked_mul(rows - 1, ld, what), cols, what);
        return checked_mul(checked_mul(e, es, what), 8, what) / 8;
    };
    plan.x_bytes = extent(a_rows, a_cols, lda, "A");
    plan.w_bytes = extent(b_rows, b_cols, ldb, "B");
    plan.y_bytes = extent(m, n, ldc, "C");
    plan.bias_bytes = has_bias ? checked_mul(n, es, "bias") : 0;
    finish_plan(plan, context);
}

void prepare_pool(pask_plan &plan, pask_context *context, const pask_pool2d_params_t *params,
                  const pask_tensor_desc *x_desc, const pask_tensor_desc *y_desc) {
    pool_problem(params, x_desc, plan.problem);
    check_output(y_desc, plan.problem, plan.problem.c);
    plan.x_bytes = x_desc->bytes;
    plan.y_bytes = y_desc->bytes;
    finish_plan(plan, context);
}

void prepare_eltwise(pask_plan &plan, pask_context *context, const pask_eltwise_params_t *params,
                     const pask_tensor_desc *x_desc, const pask_tensor_desc *m_desc, const pask_tensor_desc *a_desc,
                     const pask_tensor_desc *y_desc) {
    eltwise_problem(params, x_desc, m_desc, a_desc, plan.problem);
    check_output(y_desc, plan.problem, plan.problem.c);
    plan.x_bytes = x_desc->bytes;
    plan.m_bytes = m_desc ? m_desc->bytes : 0;
    plan.a_bytes = a_desc ? a_desc->bytes : 0;
    plan.y_bytes = y_desc->bytes;
    finish_plan(plan, context);
}

void prepare_cat(pask_plan &plan, pask_context *context, int64_t count, const const_pask_tensor_desc_t *x_descs,
                 const pask_tensor_desc *y_desc) {
    cat_problem(count, x_descs, plan.problem);
    check_output(y_desc, plan.problem, plan.problem.o);
    plan.cat_bytes.clear();
    for (int64_t i = 0; i < count; ++i) plan.cat_bytes.push_back(x_descs[i]->bytes);
    plan.y_bytes = y_desc->bytes;
    finish_plan(plan, context);
}

// eltwise and cat: their own operands (x and y may coincide for eltwise).
void check_new_op_pointers(const pask_plan &plan, const pask_plan_args_t &a) {
    const Problem &p = plan.problem;
    need(a.y, "y");
    if (p.op == PASK_OP_CAT) {
        need(a.xs, "xs");
        for (size_t i = 0; i < p.cat_c.size(); ++i) {
            const std::string name = "cat input " + std::to_string(i);
            need(a.xs[i], name.c_str());
            check_no_overlap(a.y, plan.y_bytes, a.xs[i], plan.cat_bytes[i], "y", name.c_str());
        }
        return;
    }
    need(a.x, "x");
    require((plan.m_bytes != 0) == (a.m != nullptr), PASK_ERROR_NULL_POINTER,
            "m and m_desc must both be NULL or both be set");
    require((plan.a_bytes != 0) == (a.a != nullptr), PASK_ERROR_NULL_POINTER,
            "a and a_desc must both be NULL or both be set");
    if (a.x != a.y) check_no_overlap(a.y, plan.y_bytes, a.x, plan.x_bytes, "y", "x (only y == x exactly is in place)");
    // m or a of x's full shape may be y itself too (add(x, b, out=b)): each
    // element is read before its own index is written, as for x
    if (!(a.m == a.y && plan.m_bytes == plan.y_bytes))
        check_no_overlap(a.y, plan.y_bytes, a.m, plan.m_bytes, "y", "m (only y == m of x's shape exactly is in place)");
    if (!(a.a == a.y && plan.a_bytes == plan.y_bytes))
        check_no_overlap(a.y, plan.y_bytes, a.a, plan.a_bytes, "y", "a (only y == a of x's shape exactly is in place)");
}

// The pointers of one execution: present where the plan needs them, absent
// where it does not, and the output overlapping no input.
void check_plan_pointers(const pask_plan &plan, const pask_plan_args_t &a) {
    const Problem &p = plan.problem;
    const bool gemm = p.op == PASK_OP_GEMM, pool = p.op == PASK_OP_POOL2D;
    const char *xn = gemm ? "a" : "x", *wn = gemm ? "b" : "w", *yn = gemm ? "c" : "y";
    need(a.x, xn);
    if (!pool) need(a.w, wn);
    need(a.y, yn);
    if (gemm) {
        if (p.has_bias) need(a.bias, "bias");
        else require(a.bias == nullptr, PASK_ERROR_INVALID_ARGUMENT, "bias given to a gemm planned without one");
    } else if (!pool) {
        require(p.has_bias == (a.bias != nullptr), PASK_ERROR_NULL_POINTER,
                "bias and bias_desc must both be NULL or both be set");
        require(p.has_residual == (a.residual != nullptr), PASK_ERROR_NULL_POINTER,
                "residual and residual_desc must both be NULL or both be set");
    }
    const char *on = gemm ? "C" : "y";
    check_no_overlap(a.y, plan.y_bytes, a.x, plan.x_bytes, on, gemm ? "A" : "x");
    if (!pool) check_no_overlap(a.y, plan.y_bytes, a.w, plan.w_bytes, on, gemm ? "B" : "w");
    if (!pool && a.bias) check_no_overlap(a.y, plan.y_bytes, a.bias, plan.bias_bytes, on, "bias");
    if (!pool && !gemm && a.residual) check_no_overlap(a.y, plan.y_bytes, a.residual, plan.residual_bytes, on, "residual");
}

// The calling thread's stream is `stream` for this execution (NULL: the one
// pask_set_stream gave it, else the default stream).
class StreamScope {
public:
    StreamScope(const pask::Backend &b, void *stream) : b_(stream ? &b : nullptr) {
        if (b_) prev_ = b_->get_stream(), b_->set_stream(stream);
    }
    ~StreamScope() {
        if (b_) b_->set_stream(prev_);
    }
    StreamScope(const StreamScope &) = delete;
    StreamScope &operator=(const StreamScope &) = delete;

private:
    const pask::Backend *b_;
    void *prev_ = nullptr;
};

void execute_plan(const pask_plan &plan, const pask_plan_args_t &a, void *stream) {
    const pask_op_t op = plan.problem.op;
    pask::OpArgs args = plan.args;
    if (op == PASK_OP_ELTWISE || op == PASK_OP_CAT) {
        check_new_op_pointers(plan, a);
        args.x = op == PASK_OP_ELTWISE ? a.x : nullptr;
        args.m = op == PASK_OP_ELTWISE ? a.m : nullptr;
        args.a = op == PASK_OP_ELTWISE ? a.a : nullptr;
        args.xs = op == PASK_OP_CAT ? a.xs : nullptr;
        args.y = a.y;
        StreamScope scope(*plan.context->backend, stream);
        plan.context->dispatcher->execute_hashed(plan.problem, plan.hash, args, plan.memo.get());
        return;
    }
    check_plan_pointers(plan, a);
    args.x = a.x;
    args.w = plan.problem.op == PASK_OP_POOL2D ? nullptr : a.w;
    args.bias = a.bias;
    args.residual = plan.problem.op == PASK_OP_CONV2D ? a.residual : nullptr;
    args.y = a.y;
    if (plan.constant_w && a.w == plan.constant_w) args.packed = plan.packed.get();
    StreamScope scope(*plan.context->backend, stream);
    plan.context->dispatcher->execute_hashed(plan.problem, plan.hash, args, plan.memo.get());
}

}  // namespace

extern "C" {

const char *pask_status_string(pask_status_t status_arg) {
    switch (raw(status_arg)) {
    case PASK_SUCCESS: return "PASK_SUCCESS";
    case PASK_ERROR_INVALID_ARGUMENT: return "PASK_ERROR_INVALID_ARGUMENT";
    case PASK_ERROR_NULL_POINTER: return "PASK_ERROR_NULL_POINTER";
    case PASK_ERROR_SHAPE_MISMATCH: return "PASK_ERROR_SHAPE_MISMATCH";
    case PASK_ERROR_UNSUPPORTED: return "PASK_ERROR_UNSUPPORTED";
    case PASK_ERROR_OVERFLOW: return "PASK_ERROR_OVERFLOW";
    case PASK_ERROR_OUT_OF_MEMORY: return "PASK_ERROR_OUT_OF_MEMORY";
    case PASK_ERROR_BACKEND_UNAVAILABLE: return "PASK_ERROR_BACKEND_UNAVAILABLE";
    case PASK_ERROR_LOAD_FAILED: return "PASK_ERROR_LOAD_FAILED";
    case PASK_ERROR_INTERNAL: return "PASK_ERROR_INTERNAL";
    }
    return "PASK_ERROR_UNKNOWN_STATUS";
}

const char *pask_last_error_message(void) { return pask::last_error(); }

const char *pask_version_string(void) { return PASK_VERSION_STRING; }

const char *pask_last_solver(void) { return pask::last_solver(); }

const char *pask_last_decision(void) { return pask::last_decision(); }

pask_status_t pask_options_create(pask_options_t *options) {
    return guarded([&] {
        need(options, "options");
        *options = new pask_options();
    });
}

pask_status_t pask_options_destroy(pask_options_t options) {
    return guarded([&] { delete options; });
}

pask_status_t pask_options_set(pask_options_t options, const char *key, const char *value) {
    return guarded([&] {
        need(options, "options");
        need(key, "key");
        need(value, "value");
        require(*key != '\0', PASK_ERROR_INVALID_ARGUMENT, "option key is empty");
        options->values[key] = value;
    });
}

pask_status_t pask_context_create(pask_context_t *context, pask_device_type_t device_type, int device_index,
                                  const_pask_options_t options) {
    return guarded([&] {
        need(context, "context");
        const int type = raw(device_type);
        require(type >= PASK_DEVICE_CPU && type <= PASK_DEVICE_HIP, PASK_ERROR_INVALID_ARGUMENT,
                "unknown device type " + std::to_string(type));
        auto *ctx = new pask_context(static_cast<pask_device_type_t>(type), device_index, options);
        *context = ctx;
    });
}

pask_status_t pask_context_close(pask_context_t context) {
    return guarded([&] {
        need(context, "context");
        context->close();
    });
}

pask_status_t pask_context_destroy(pask_context_t context) {
    return guarded([&] {
        // A context inherited through fork() is left to the child's exit: its
        // threads do not exist here, and its mutexes may be held by them.
        if (context && !context->gate.inherited()) delete context;
    });
}

pask_status_t pask_context_get_num_threads(const_pask_context_t context, int *num_threads) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(num_threads, "num_threads");
        *num_threads = context->backend->num_threads();
    });
}

pask_status_t pask_context_get_target(const_pask_context_t context, const char **target) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(target, "target");
        const auto &targets = context->backend->targets();
        require(!targets.empty(), PASK_ERROR_INTERNAL, std::string(context->backend->name()) + " backend has no target");
        *target = targets.front().c_str();  // the backend's vector lives as long as the context
    });
}

pask_status_t pask_tensor_desc_create(pask_tensor_desc_t *desc, pask_dtype_t dtype, pask_layout_t layout, int ndim,
                                      const int64_t *dims) {
    return guarded([&] {
        need(desc, "desc");
        need(dims, "dims");
        require(valid_dtype(raw(dtype)), PASK_ERROR_INVALID_ARGUMENT, "unknown dtype " + std::to_string(raw(dtype)));
        require(valid_layout(raw(layout)), PASK_ERROR_INVALID_ARGUMENT,
                "unknown layout " + std::to_string(raw(layout)));
        require(ndim >= 1 && ndim <= 8, PASK_ERROR_INVALID_ARGUMENT, "ndim must be in [1, 8], got " + std::to_string(ndim));
        require(layout == PASK_LAYOUT_ROW_MAJOR || ndim == 4, PASK_ERROR_INVALID_ARGUMENT,
                std::string(pask::layout_name(layout)) + " needs 4 dims, got " + std::to_string(ndim));
        pask_tensor_desc d{};
        d.dtype = dtype;
        d.layout = layout;
        d.ndim = ndim;
        int64_t elements = 1;
        for (int i = 0; i < ndim; ++i) {
            require(dims[i] >= 1, PASK_ERROR_INVALID_ARGUMENT,
                    "dims[" + std::to_string(i) + "] must be >= 1, got " + std::to_string(dims[i]));
            d.dims[i] = dims[i];
            elements = checked_mul(elements, dims[i], "tensor");
        }
        d.elements = elements;
        // Keep byte offsets (and offsets times small factors) inside int64.
        d.bytes = checked_mul(checked_mul(elements, pask::dtype_size(dtype), "tensor"), 8, "tensor") / 8;
        *desc = new pask_tensor_desc(d);
    });
}

pask_status_t pask_tensor_desc_destroy(pask_tensor_desc_t desc) {
    return guarded([&] { delete desc; });
}

pask_status_t pask_tensor_desc_get(const_pask_tensor_desc_t desc, pask_dtype_t *dtype, pask_layout_t *layout,
                                   int *ndim, int64_t *dims) {
    return guarded([&] {
        need(desc, "desc");
        if (dtype) *dtype = desc->dtype;
        if (layout) *layout = desc->layout;
        if (ndim) *ndim = desc->ndim;
        if (dims)
            for (int i = 0; i < 8; ++i) dims[i] = i < desc->ndim ? desc->dims[i] : 0;
    });
}

pask_status_t pask_tensor_desc_get_size(const_pask_tensor_desc_t desc, size_t *bytes) {
    return guarded([&] {
        need(desc, "desc");
        need(bytes, "bytes");
        *bytes = static_cast<size_t>(desc->bytes);
    });
}

pask_status_t pask_conv2d_output_dims(const pask_conv2d_params_t *params, const_pask_tensor_desc_t x_desc,
                                      const_pask_tensor_desc_t w_desc, int64_t *out_dims) {
    return guarded([&] {
        need(out_dims, "out_dims");
        Problem p;
        conv_problem(params, x_desc, w_desc, p);
        out_dims[0] = p.n; out_dims[1] = p.o; out_dims[2] = p.oh; out_dims[3] = p.ow;
    });
}

pask_status_t pask_conv2d_forward(pask_context_t context, const pask_conv2d_params_t *params,
                                  const pask_epilogue_t *epilogue, const_pask_tensor_desc_t x_desc, const void *x,
                                  const_pask_tensor_desc_t w_desc, const void *w, const_pask_tensor_desc_t bias_desc,
                                  const void *bias, const_pask_tensor_desc_t residual_desc, const void *residual,
                                  const_pask_tensor_desc_t y_desc, void *y) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        pask_plan plan;
        prepare_conv(plan, context, params, epilogue, x_desc, w_desc, bias_desc, residual_desc, y_desc);
        execute_plan(plan, pask_plan_args_t{x, w, bias, residual, y}, nullptr);
    });
}
pask_status_t pask_gemm(pask_context_t context, pask_dtype_t dtype, int trans_a, int trans_b, int64_t m, int64_t n,
                        int64_t k, const pask_epilogue_t *epilogue, const void *a, int64_t lda, const void *b,
                        int64_t ldb, const void *bias, void *c, int64_t ldc) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        pask_plan plan;
        prepare_gemm(plan, context, raw(dtype), trans_a, trans_b, m, n, k, epilogue, lda, ldb, ldc, bias != nullptr);
        execute_plan(plan, pask_plan_args_t{a, b, bias, nullptr, c}, nullptr);
    });
}
pask_status_t pask_pool2d_output_dims(const pask_pool2d_params_t *params, const_pask_tensor_desc_t x_desc,
                                      int64_t *out_dims) {
    return guarded([&] {
        need(out_dims, "out_dims");
        Problem p;
        pool_problem(params, x_desc, p);
        out_dims[0] = p.n; out_dims[1] = p.c; out_dims[2] = p.oh; out_dims[3] = p.ow;
    });
}

pask_status_t pask_pool2d_forward(pask_context_t context, const pask_pool2d_params_t *params,
                                  const_pask_tensor_desc_t x_desc, const void *x, const_pask_tensor_desc_t y_desc,
                                  void *y) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        pask_plan plan;
        prepare_pool(plan, context, params, x_desc, y_desc);
        execute_plan(plan, pask_plan_args_t{x, nullptr, nullptr, nullptr, y}, nullptr);
    });
}

pask_status_t pask_eltwise_forward(pask_context_t context, const pask_eltwise_params_t *params,
                                   const_pask_tensor_desc_t x_desc, const void *x, const_pask_tensor_desc_t m_desc,
                                   const void *m, const_pask_tensor_desc_t a_desc, const void *a,
                                   const_pask_tensor_desc_t y_desc, void *y) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        pask_plan plan;
        prepare_eltwise(plan, context, params, x_desc, m_desc, a_desc, y_desc);
        pask_plan_args_t args{};
        args.x = x; args.m = m; args.a = a; args.y = y;
        execute_plan(plan, args, nullptr);
    });
}

pask_status_t pask_cat_output_dims(int64_t count, const const_pask_tensor_desc_t *x_descs, int64_t *out_dims) {
    return guarded([&] {
        need(out_dims, "out_dims");
        Problem p;
        cat_problem(count, x_descs, p);
        out_dims[0] = p.n; out_dims[1] = p.o; out_dims[2] = p.h; out_dims[3] = p.w;
    });
}

pask_status_t pask_cat_forward(pask_context_t context, int64_t count, const const_pask_tensor_desc_t *x_descs,
                               const void *const *xs, const_pask_tensor_desc_t y_desc, void *y) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        pask_plan plan;
        prepare_cat(plan, context, count, x_descs, y_desc);
        pask_plan_args_t args{};
        args.xs = xs; args.y = y;
        execute_plan(plan, args, nullptr);
    });
}

// ---- prepared calls -------------------------------------------------------------

pask_status_t pask_plan_create_conv2d(pask_plan_t *plan, pask_context_t context, const pask_conv2d_params_t *params,
                                      const pask_epilogue_t *epilogue, const_pask_tensor_desc_t x_desc,
                                      const_pask_tensor_desc_t w_desc, const_pask_tensor_desc_t bias_desc,
                                      const_pask_tensor_desc_t residual_desc, const_pask_tensor_desc_t y_desc) {
    return guarded([&] {
        need(plan, "plan");
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);
        auto made = std::make_unique<pask_plan>();
        prepare_conv(*made, context, params, epilogue, x_desc, w_desc, bias_desc, residual_desc, y_desc);
        finish_prepared(*made);
        *plan = made.release();
    });
}

pask_status_t pask_plan_create_gemm(pask_plan_t *plan, pask_context_t context, pask_dtype_t dtype, int trans_a,
                                    int trans_b, int64_t m, int64_t n, int64_t k, const pask_epilogue_t *epilogue,
                                    int64_t lda, int64_t ldb, int64_t ldc, int has_bias) {
    return guarded([&] {
        need(plan, "plan");
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);
        auto made = std::make_unique<pask_plan>();
        prepare_gemm(*made, context, raw(dtype), trans_a, trans_b, m, n, k, epilogue, lda, ldb, ldc, has_bias != 0);
        finish_prepared(*made);
        *plan = made.release();
    });
}

pask_status_t pask_plan_create_pool2d(pask_plan_t *plan, pask_context_t context, const pask_pool2d_params_t *params,
                                      const_pask_tensor_desc_t x_desc, const_pask_tensor_desc_t y_desc) {
    return guarded([&] {
        need(plan, "plan");
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);
        auto made = std::make_unique<pask_plan>();
        prepare_pool(*made, context, params, x_desc, y_desc);
        finish_prepared(*made);
        *plan = made.release();
    });
}

pask_status_t pask_plan_create_eltwise(pask_plan_t *plan, pask_context_t context, const pask_eltwise_params_t *params,
                                       const_pask_tensor_desc_t x_desc, const_pask_tensor_desc_t m_desc,
                                       const_pask_tensor_desc_t a_desc, const_pask_tensor_desc_t y_desc) {
    return guarded([&] {
        need(plan, "plan");
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);
        auto made = std::make_unique<pask_plan>();
        prepare_eltwise(*made, context, params, x_desc, m_desc, a_desc, y_desc);
        finish_prepared(*made);
        *plan = made.release();
    });
}

pask_status_t pask_plan_create_cat(pask_plan_t *plan, pask_context_t context, int64_t count,
                                   const const_pask_tensor_desc_t *x_descs, const_pask_tensor_desc_t y_desc) {
    return guarded([&] {
        need(plan, "plan");
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);
        auto made = std::make_unique<pask_plan>();
        prepare_cat(*made, context, count, x_descs, y_desc);
        finish_prepared(*made);
        *plan = made.release();
    });
}

pask_status_t pask_plan_execute(const_pask_plan_t plan, const pask_plan_args_t *args, void *stream) {
    return guarded([&] {
        need(plan, "plan");
        need(args, "args");
        pask::CallGate::Use in_use(plan->context->gate);
        execute_plan(*plan, *args, stream);
    });
}

pask_status_t pask_plan_execute_sequence(const const_pask_plan_t *plans, const pask_plan_args_t *const *args,
                                         int64_t count, void *stream, const char **solvers, const char **decisions,
                                         int64_t *done) {
    int64_t ran = 0;
    const pask_status_t status = guarded([&] {
        require(count >= 0, PASK_ERROR_INVALID_ARGUMENT, "count must be >= 0, not " + std::to_string(count));
        if (count == 0) return;
        need(plans, "plans");
        need(args, "args");
        for (; ran < count; ++ran) {
            try {
                need(plans[ran], "plans[i]");
                need(args[ran], "args[i]");
                pask::CallGate::Use in_use(plans[ran]->context->gate);
                execute_plan(*plans[ran], *args[ran], stream);
            } catch (const pask::Error &e) {
                pask::fail(e.status(), "call " + std::to_string(ran) + " of " + std::to_string(count) + ": " +
                                           e.what());
            }
            if (solvers) solvers[ran] = pask::last_solver();
            if (decisions) decisions[ran] = pask::last_decision();
        }
    });
    if (done) *done = ran;
    return status;
}

pask_status_t pask_plan_set_constant_weights(pask_plan_t plan, const void *w) {
    return guarded([&] {
        need(plan, "plan");
        if (w && plan->problem.op != PASK_OP_CONV2D)
            pask::fail(PASK_ERROR_INVALID_ARGUMENT, "constant weights are for conv2d plans");
        plan->packed.reset(w ? new pask::PackedWeights() : nullptr);
        plan->constant_w = w;
    });
}

pask_status_t pask_plan_pack_weights(pask_plan_t plan, int *packed) {
    return guarded([&] {
        need(plan, "plan");
        if (packed) *packed = 0;
        if (!plan->constant_w) return;
        pask::CallGate::Use in_use(plan->context->gate);
        pask::OpArgs args = plan->args;
        args.w = plan->constant_w;
        args.packed = plan->packed.get();
        const bool found = plan->context->dispatcher->pack_constant(plan->problem, plan->hash, args);
        if (packed) *packed = found ? 1 : 0;
    });
}

pask_status_t pask_plan_hint(const_pask_plan_t plan) {
    return guarded([&] {
        need(plan, "plan");
        pask::CallGate::Use in_use(plan->context->gate);
        plan->context->hint(plan->problem);
    });
}

pask_status_t pask_plan_get_op(const_pask_plan_t plan, pask_op_t *op) {
    return guarded([&] {
        need(plan, "plan");
        need(op, "op");
        *op = plan->problem.op;
    });
}

pask_status_t pask_plan_get_fields(const_pask_plan_t plan, const int64_t **fields, int64_t *count) {
    return guarded([&] {
        need(plan, "plan");
        need(fields, "fields");
        need(count, "count");
        thread_local std::vector<int64_t> out;
        out = plan->problem.fields();
        *fields = out.data();
        *count = static_cast<int64_t>(out.size());
    });
}

pask_status_t pask_plan_destroy(pask_plan_t plan) {
    return guarded([&] { delete plan; });
}
pask_status_t pask_device_count(pask_device_type_t device_type, int *count) {
    return guarded([&] {
        need(count, "count");
        const int type = raw(device_type);
        *count = type >= PASK_DEVICE_CPU && type <= PASK_DEVICE_HIP
                     ? pask_context::device_count(static_cast<pask_device_type_t>(type))
                     : 0;
    });
}

pask_status_t pask_probe(pask_device_type_t device_type, const_pask_options_t options, const char **report) {
    return guarded([&] {
        need(report, "report");
        const int type = raw(device_type);
        require(type >= PASK_DEVICE_CPU && type <= PASK_DEVICE_HIP, PASK_ERROR_INVALID_ARGUMENT,
                "unknown device type " + std::to_string(type));
        const auto t = static_cast<pask_device_type_t>(type);
        const pask::DeviceSetup *setup = pask::find_device_setup(t);
        require(setup && setup->probe, PASK_ERROR_BACKEND_UNAVAILABLE,
                "this libpaskdnn has no set-up for device type " + std::to_string(type));
        thread_local std::string out;
        out = setup->probe(pask::parse_options(t, options));
        *report = out.c_str();
    });
}

pask_status_t pask_malloc(pask_context_t context, size_t bytes, void **ptr) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->refuse_during_capture("pask_malloc");
        need(ptr, "ptr");
        *ptr = context->backend->malloc_device(bytes);
    });
}

pask_status_t pask_free(pask_context_t context, void *ptr) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->refuse_during_capture("pask_free");
        context->backend->free_device(ptr);
    });
}

pask_status_t pask_memcpy(pask_context_t context, void *dst, const void *src, size_t bytes, pask_copy_kind_t kind) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->refuse_during_capture("pask_memcpy");
        require(raw(kind) >= PASK_COPY_HOST_TO_DEVICE && raw(kind) <= PASK_COPY_DEVICE_TO_DEVICE,
                PASK_ERROR_INVALID_ARGUMENT, "unknown copy kind " + std::to_string(raw(kind)));
        if (bytes == 0) return;
        need(dst, "dst");
        need(src, "src");
        if (kind != PASK_COPY_HOST_TO_DEVICE) context->backend->check_device_pointer(src, "src");
        if (kind != PASK_COPY_DEVICE_TO_HOST) context->backend->check_device_pointer(dst, "dst");
        context->backend->copy(dst, src, bytes, kind);
    });
}

pask_status_t pask_set_stream(pask_context_t context, void *stream) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->backend->set_stream(stream);
    });
}

pask_status_t pask_synchronize(pask_context_t context) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->refuse_during_capture("pask_synchronize");
        context->backend->synchronize();
    });
}

pask_status_t pask_prime_thread(pask_context_t context, int *primed) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->refuse_during_capture("pask_prime_thread");
        const bool done = context->prime_thread();
        if (primed) *primed = done ? 1 : 0;
    });
}

pask_status_t pask_stream_create(pask_context_t context, void **stream) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(stream, "stream");
        *stream = context->backend->stream_create();
    });
}

pask_status_t pask_stream_destroy(pask_context_t context, void *stream) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        if (!stream) return;
        require(!context->captures.captures(stream), PASK_ERROR_INVALID_ARGUMENT,
                "the stream is being captured into a graph; end the capture (pask_graph_capture_end) first");
        context->backend->stream_destroy(stream);
        if (context->backend->get_stream() == stream) context->backend->set_stream(nullptr);
    });
}

pask_status_t pask_graph_capture_begin(pask_context_t context, void *stream) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        require(stream != nullptr, PASK_ERROR_INVALID_ARGUMENT,
                "the default stream (NULL) cannot be captured; capture a stream from pask_stream_create");
        const std::string problem = context->backend->capture_problem();
        require(problem.empty(), PASK_ERROR_UNSUPPORTED, problem);
        context->captures.add(stream, context->trace.now_us());  // refuses a second capture of the thread or stream
        try {
            context->backend->capture_begin(stream);
        } catch (...) {
            context->captures.take();
            throw;
        }
    });
}

pask_status_t pask_graph_capture_end(pask_context_t context, pask_graph_t *graph) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(graph, "graph");
        const pask::ActiveCapture c = context->captures.take();
        auto g = std::make_shared<pask::CapturedGraph>();
        g->context = context;
        g->stream = c.stream;
        g->calls = c.calls;
        g->reuses = c.reuses;
        g->held = c.held;
        g->exec = context->backend->capture_end(c.stream);  // ends the capture even when it throws
        if (context->trace.enabled())
            context->trace.complete("graph capture", "graph", c.t_begin_us, context->trace.now_us() - c.t_begin_us,
                                    "\"calls\":" + std::to_string(c.calls) + ",\"reuses\":" + std::to_string(c.reuses));
        *graph = pask::register_graph(std::move(g));
    });
}

pask_status_t pask_graph_launch(const_pask_graph_t graph, void *stream) {
    return guarded([&] {
        need(graph, "graph");
        auto g = pask::find_graph(graph);
        pask_context &ctx = *g->context;
        pask::CallGate::Use in_use(ctx.gate);  // close() waits for this call
        struct Release {  // a graph destroyed meanwhile is freed here, while the context is held
            std::shared_ptr<pask::CapturedGraph> &g;
            ~Release() { g.reset(); }
        } release{g};
        const int64_t t0 = ctx.trace.enabled() ? ctx.trace.now_us() : 0;
        pask::CallActivity::Call running(ctx.callers);
        g->exec->launch(stream);
        const int64_t n = ++g->launches;
        if (ctx.trace.enabled())
            ctx.trace.complete("graph launch", "graph", t0, ctx.trace.now_us() - t0,
                               "\"calls\":" + std::to_string(g->calls) + ",\"launch\":" + std::to_string(n));
    });
}

pask_status_t pask_graph_get_info(const_pask_graph_t graph, pask_graph_info_t *info) {
    return guarded([&] {
        need(graph, "graph");
        need(info, "info");
        const auto g = pask::find_graph(graph);
        pask::CallGate::Use in_use(g->context->gate);  // close() waits for this call
        const int64_t stale = g->context->dispatcher->stale(g->held);
        info->calls = g->calls;
        info->reuses = g->reuses;
        info->launches = g->launches.load();
        info->stale = stale;
    });
}

pask_status_t pask_graph_destroy(pask_graph_t graph) {
    return guarded([&] {
        if (!graph) return;
        pask::remove_graph(graph);  // freed here, or by the last launch holding it
    });
}

pask_status_t pask_solver_count(int *count) {
    return guarded([&] {
        need(count, "count");
        *count = static_cast<int>(pask::all_solvers().size());
    });
}

pask_status_t pask_solver_info(int index, int *id, const char **name, pask_op_t *op, pask_device_type_t *device_type) {
    return guarded([&] {
        const auto &all = pask::all_solvers();
        require(index >= 0 && index < static_cast<int>(all.size()), PASK_ERROR_INVALID_ARGUMENT,
                "solver index " + std::to_string(index) + " out of range [0, " + std::to_string(all.size()) + ")");
        const pask::Solver *s = all[index];
        if (id) *id = s->id();
        if (name) *name = s->name();
        if (op) *op = s->op();
        if (device_type) *device_type = s->device();
    });
}

pask_status_t pask_context_get_stats(const_pask_context_t context, pask_stats_t *stats) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(stats, "stats");
        const pask::Stats &s = context->stats;
        pask_stats_t out{};
        out.calls = s.calls;
        out.resident_hits = s.resident_hits;
        out.reuses = s.reuses;
        out.inflight_waits = s.inflight_waits;
        out.blocking_loads = s.blocking_loads;
        out.blocking_wait_ms = double(s.blocking_wait_ns.load()) / 1e6;
        out.loads = s.loads;
        out.load_ms = double(s.load_ns.load()) / 1e6;
        out.compiles = s.compiles;
        out.compile_ms = double(s.compile_ns.load()) / 1e6;
        out.load_failures = s.load_failures;
        out.prefetches = s.prefetches;
        out.hints = s.hints;
        out.hints_matched = s.hints_matched;
        out.hints_dropped = s.hints_dropped;
        out.evictions = s.evictions;
        out.resident = static_cast<int64_t>(context->resident.size());
        out.cache_hits = s.cache_hits;
        out.cache_rejects = s.cache_rejects;
        *stats = out;
    });
}

pask_status_t pask_context_get_policy(const_pask_context_t context, const char **policy) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(policy, "policy");
        *policy = pask::policy_name(context->policy);
    });
}

pask_status_t pask_context_set_resident_capacity(pask_context_t context, int64_t capacity) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        require(capacity >= 0, PASK_ERROR_INVALID_ARGUMENT, "capacity must be >= 0, got " + std::to_string(capacity));
        context->stats.evictions += static_cast<int64_t>(context->resident.set_capacity(static_cast<size_t>(capacity)));
    });
}

pask_status_t pask_context_wait_loads(pask_context_t context, int64_t timeout_ms, int *idle) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        require(timeout_ms >= 0, PASK_ERROR_INVALID_ARGUMENT, "timeout_ms must be >= 0");
        bool done = context->loader->wait_idle(timeout_ms);
        if (idle) *idle = done ? 1 : 0;
    });
}

pask_status_t pask_context_export_trace(const_pask_context_t context, const char *path) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(path, "path");
        context->export_trace(path);
    });
}

pask_status_t pask_context_save_record(const_pask_context_t context, const char *path) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        need(path, "path");
        context->save_record(path);
    });
}

pask_status_t pask_hint_conv2d(pask_context_t context, const pask_conv2d_params_t *params,
                               const pask_epilogue_t *epilogue, const_pask_tensor_desc_t x_desc,
                               const_pask_tensor_desc_t w_desc, const_pask_tensor_desc_t bias_desc,
                               const_pask_tensor_desc_t residual_desc) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        Problem p;
        pask::OpArgs args;
        conv_call_problem(params, epilogue, x_desc, w_desc, bias_desc, residual_desc, p, args);
        context->hint(p);
    });
}

pask_status_t pask_hint_gemm(pask_context_t context, pask_dtype_t dtype, int trans_a, int trans_b, int64_t m,
                             int64_t n, int64_t k, const pask_epilogue_t *epilogue, int64_t lda, int64_t ldb,
                             int64_t ldc, int has_bias) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        Problem p;
        pask::OpArgs args;
        gemm_problem(raw(dtype), trans_a, trans_b, m, n, k, epilogue, lda, ldb, ldc, has_bias != 0, p, args);
        context->hint(p);
    });
}

pask_status_t pask_hint_pool2d(pask_context_t context, const pask_pool2d_params_t *params,
                               const_pask_tensor_desc_t x_desc) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        Problem p;
        pool_problem(params, x_desc, p);
        context->hint(p);
    });
}

pask_status_t pask_hint_eltwise(pask_context_t context, const pask_eltwise_params_t *params, const_pask_tensor_desc_t x_desc,
                                const_pask_tensor_desc_t m_desc, const_pask_tensor_desc_t a_desc) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        Problem p;
        eltwise_problem(params, x_desc, m_desc, a_desc, p);
        context->hint(p);
    });
}

pask_status_t pask_hint_cat(pask_context_t context, int64_t count, const const_pask_tensor_desc_t *x_descs) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        Problem p;
        cat_problem(count, x_descs, p);
        context->hint(p);
    });
}

pask_status_t pask_hint_clear(pask_context_t context) {
    return guarded([&] {
        need(context, "context");
        pask::CallGate::Use in_use(context->gate);  // close() waits for this call
        context->hints->clear();
    });
}

}  // extern "C"

// ---- kernels without a device: what precompiled bundles are made of -------------

namespace {

const pask::DeviceSetup &rtc_setup(pask_device_type_t device_type) {
    const int type = raw(device_type);
    require(type == PASK_DEVICE_CUDA || type == PASK_DEVICE_HIP, PASK_ERROR_INVALID_ARGUMENT,
            "device type " + std::to_string(type) + " has no run-time compiled kernels (CUDA or HIP only)");
    const pask::DeviceSetup *setup = pask::find_device_setup(static_cast<pask_device_type_t>(type));
    require(setup && setup->rtc_options && setup->kernel_source, PASK_ERROR_BACKEND_UNAVAILABLE,
            "this libpaskdnn has no kernel sources for device type " + std::to_string(type));
    return *setup;
}

// A target is a word (sm_90, gfx90a): it becomes a compiler option.
void check_target(const char *target) {
    need(target, "target");
    const size_t n = std::strlen(target);
    bool ok = n > 0 && n <= 32;
    for (size_t i = 0; ok && i < n; ++i)
        ok = (target[i] >= 'a' && target[i] <= 'z') || (target[i] >= 'A' && target[i] <= 'Z') ||
             (target[i] >= '0' && target[i] <= '9') || target[i] == '_';
    require(ok, PASK_ERROR_INVALID_ARGUMENT,
            std::string("target must be 1-32 letters, digits or '_' (e.g. sm_90, gfx90a), got \"") + target + "\"");
}

bool is_word(const std::string &s, const char *extra) {
    if (s.empty()) return false;
    for (char ch : s)
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              std::strchr(extra, ch)))
            return false;
    return true;
}

}  // namespace

pask_status_t pask_kernel_candidates(pask_device_type_t device_type, const char *target, const int64_t *fields,
                                     int64_t count, const char **report) {
    return guarded([&] {
        need(report, "report");
        need(fields, "fields");
        const pask::DeviceSetup &setup = rtc_setup(device_type);
        check_target(target);
        require(count > 0 && count <= 16 + pask::kMaxCatInputs, PASK_ERROR_INVALID_ARGUMENT,
                "count must be in [1, " + std::to_string(16 + pask::kMaxCatInputs) + "], got " + std::to_string(count));
        Problem p = Problem::from_fields(std::vector<int64_t>(fields, fields + count));
        p.device = setup.type;
        p.device_index = 0;
        std::string out = "[";
        for (const pask::Solver *s : pask::all_solvers()) {
            if (s->device() != setup.type || s->op() != p.op || std::strcmp(s->provider(), "native") != 0 ||
                !s->applicable(p))
                continue;
            const pask::KernelKey key = s->kernel_for(p, target);
            if (out.size() > 1) out += ",";
            char cost[64];
            std::snprintf(cost, sizeof cost, "%.6g", s->cost_us(p));
            out += "\n {\"solver_id\": " + std::to_string(s->id()) + ", \"solver\": " + pask::json::quote(s->name()) +
                   ", \"cost_us\": " + cost + ", \"key\": " + pask::json::quote(key.str()) +
                   ", \"object_id\": " + pask::json::quote(key.object_id()) + ", \"object\": " +
                   pask::json::quote(key.object) + ", \"entry\": " + pask::json::quote(key.entry) +
                   ", \"constants\": " + pask::json::quote(key.constants) + ", \"target\": " +
                   pask::json::quote(key.target) + ", \"options\": " + pask::json::quote(setup.rtc_options(key)) + "}";
        }
        thread_local std::string text;
        text = out + "\n]";
        *report = text.c_str();
    });
}

pask_status_t pask_kernel_source(pask_device_type_t device_type, const char *object, const char **source) {
    return guarded([&] {
        need(object, "object");
        need(source, "source");
        const pask::DeviceSetup &setup = rtc_setup(device_type);
        const char *src = setup.kernel_source(object);
        require(src != nullptr, PASK_ERROR_INVALID_ARGUMENT,
                std::string("no kernel source for code object \"") + object + "\"");
        *source = src;
    });
}

pask_status_t pask_context_add_code_object(pask_context_t context, const char *object_id, const void *bytes,
                                           size_t size, const char *sha256) {
    return guarded([&] {
        need(context, "context");
        need(object_id, "object_id");
        need(bytes, "bytes");
        need(sha256, "sha256");
        // provider/backend/object[constants]@target, as KernelKey::object_id() writes it
        const std::string id = object_id;
        const auto s1 = id.find('/'), s2 = s1 == std::string::npos ? s1 : id.find('/', s1 + 1);
        const auto at = id.rfind('@');
        bool ok = s2 != std::string::npos && at != std::string::npos && at > s2 + 1;
        std::string backend, object, target, constants;
        if (ok) {
            backend = id.substr(s1 + 1, s2 - s1 - 1);
            object = id.substr(s2 + 1, at - s2 - 1);
            target = id.substr(at + 1);
            const auto open = object.find('[');
            if (open != std::string::npos) {
                ok = object.back() == ']';
                constants = object.substr(open + 1, object.size() - open - 2);
                object = object.substr(0, open);
            }
            ok = ok && id.substr(0, s1) == "native" && is_word(backend, "") && is_word(object, "") &&
                 is_word(target, "") && (constants.empty() || is_word(constants, "=,-."));
        }
        require(ok, PASK_ERROR_INVALID_ARGUMENT,
                "object_id must read native/<backend>/<object>[<constants>]@<target>, got \"" + id + "\"");
        require(size > 0 && size <= pask::kMaxCodeObjectBytes, PASK_ERROR_INVALID_ARGUMENT,
                id + ": size " + std::to_string(size) + " is not in [1, " + std::to_string(pask::kMaxCodeObjectBytes) + "]");
        std::string data(static_cast<const char *>(bytes), size);
        const std::string want = sha256, got = pask::sha256_hex(data);
        require(want.size() == 64 && is_word(want, ""), PASK_ERROR_INVALID_ARGUMENT,
                id + ": sha256 must be 64 hex digits, got \"" + want + "\"");
        require(got == want, PASK_ERROR_INVALID_ARGUMENT,
                id + ": checksum mismatch (SHA-256 " + got + ", expected " + want + ")");
        require(data.size() >= 4 && data.compare(0, 4, "\x7f" "ELF") == 0, PASK_ERROR_INVALID_ARGUMENT,
                id + ": not a code object (no ELF header)");
        pask::CallGate::Use in_use(context->gate);
        require(context->device_type != PASK_DEVICE_CPU, PASK_ERROR_UNSUPPORTED,
                "a CPU context takes no code objects: host code loads only from the installed package");
        require(backend == context->backend->name(), PASK_ERROR_INVALID_ARGUMENT,
                id + ": a " + backend + " code object for a " + context->backend->name() + " context");
        context->store->provide(id, std::move(data));
    });
}


/*
 * The epilogue activations beyond relu/relu6 (pask_activation_t 3..8), one
 * float at a time, for every CPU kernel (common.hpp's apply_act and
 * sgemm.hpp's act_scalar/act_vec call it). torch.nn.functional's formulas:
 *   sigmoid(x)     = 1 / (1 + exp(-x))
 *   silu(x)        = x * sigmoid(x)
 *   hardswish(x)   = x * relu6(x + 3) / 6
 *   hardsigmoid(x) = relu6(x + 3) / 6
 *   gelu(x)        = 0.5 * x * (1 + erf(x / sqrt(2)))
 *   gelu_tanh(x)   = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
 * evaluated in double and rounded once to float (so within about one float
 * rounding of the float64 value), in forms free of cancellation:
 * 1 + erf(t) = erfc(-t) and 1 + tanh(u) = 2 / (1 + exp(-2u)), so that the
 * tails far below zero keep their relative accuracy.
 * NaN propagates (every comparison below is false for NaN and the arithmetic
 * carries it). +-inf give the limits: sigmoid / hardsigmoid 0 and 1; silu,
 * hardswish, gelu, gelu_tanh -0 at -inf (not -inf * 0 = NaN) and +inf at +inf.
 */
#ifndef PASK_CPU_ACTIVATION_HPP
#define PASK_CPU_ACTIVATION_HPP

#include <cmath>

#include "kernel_abi.h"

static inline double pask_cpu_sigmoid_d(double x) {
    if (x >= 0.0) return 1.0 / (1.0 + std::exp(-x));
    const double e = std::exp(x);  // NaN stays NaN; -inf gives 0
    return e / (1.0 + e);
}

/* The activations with parameters: leaky_relu (p[0] = negative slope) and
 * clamp (p[0] = lo <= p[1] = hi). NaN fails each test and passes through. */
static inline float pask_cpu_act_param(float x, int act, const float *p) {
    if (act == PASK_CPU_ACT_LEAKY_RELU) return x < 0.f ? x * p[0] : x;
    if (act == PASK_CPU_ACT_CLAMP) return x < p[0] ? p[0] : (x > p[1] ? p[1] : x);
    return x;
}

/* The new activations (act >= PASK_CPU_ACT_SIGMOID); anything else returns x. */
static inline float pask_cpu_act_ext(float xf, int act) {
    const double x = xf;
    switch (act) {
    case PASK_CPU_ACT_SIGMOID:
        return (float)pask_cpu_sigmoid_d(x);
    case PASK_CPU_ACT_SILU:
        if (x == -INFINITY) return -0.f;
        return (float)(x * pask_cpu_sigmoid_d(x));
    case PASK_CPU_ACT_HARDSWISH: {
        const double t = x + 3.0;
        if (t < 0.0) return -0.f;  // x * 0 / 6 with x < -3 (not -inf * 0 = NaN)
        if (t > 6.0) return xf;
        return (float)(x * t / 6.0);
    }
    case PASK_CPU_ACT_HARDSIGMOID: {
        const double t = x + 3.0;
        if (t < 0.0) return 0.f;
        if (t > 6.0) return 1.f;
        return (float)(t / 6.0);
    }
    case PASK_CPU_ACT_GELU:
        if (x == -INFINITY) return -0.f;
        return (float)(0.5 * x * std::erfc(-x * 0.70710678118654752440));
    case PASK_CPU_ACT_GELU_TANH: {
        if (x == -INFINITY) return -0.f;
        if (x == INFINITY) return xf;
        const double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);  // sqrt(2/pi)
        // 0.5 * x * (1 + tanh(u)) = x * sigmoid(2u)
        return (float)(x * pask_cpu_sigmoid_d(2.0 * u));
    }
    case PASK_CPU_ACT_LEAKY_RELU:
    case PASK_CPU_ACT_CLAMP:  // need their parameters: pask_cpu_act_param
    default:
        return xf;
    }
}

#endif

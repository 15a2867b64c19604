// Plan: a prepared call (the object behind pask_plan_t). One op's descriptors
// and parameters, validated and hashed once, with the byte extents its data
// pointers are checked against; executed many times with pointers and a stream.
// The eager entry points (pask_conv2d_forward, ...) build one on the stack.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dispatcher.hpp"
#include "problem.hpp"
#include "solver.hpp"

struct pask_context;

struct pask_plan {
    pask_context *context = nullptr;
    pask::Problem problem;  // device fields set
    size_t hash = 0;
    pask::OpArgs args;      // alpha, beta; the pointers come with each execution
    int64_t x_bytes = 0, w_bytes = 0, bias_bytes = 0, residual_bytes = 0, y_bytes = 0;
    int64_t m_bytes = 0, a_bytes = 0;          // eltwise operands (0: none)
    std::vector<int64_t> cat_bytes;            // cat: each input's extent
    // pask_plan_set_constant_weights: executions with w == constant_w may use
    // (and fill) packed; both null otherwise.
    const void *constant_w = nullptr;
    std::unique_ptr<pask::PackedWeights> packed;
    // The decision its executions reuse while it holds (pask_plan_create_*;
    // none for the eager entry points' one-call plans).
    std::unique_ptr<pask::DecisionMemo> memo;
};

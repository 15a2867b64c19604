// Options: a context's settings, parsed and validated once from the C API's
// key/value pairs and the environment ($PASKDNN_CACHE_DIR, $PASKDNN_HINTS,
// $PASKDNN_CUDNN, $PASKDNN_LOADER_YIELD_MS). Every key is one row of the table in options.cpp.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "paskdnn.h"
#include "policy.hpp"
#include "solver.hpp"

struct pask_options {
    std::map<std::string, std::string> values;
};

namespace pask {

struct Options {
    Policy policy = Policy::Pask;
    int num_threads = 1;        // CPU kernel threads (default: every core)
    int loader_threads = 2;     // default 2 on the CPU, 4 on a GPU host with >= 8 cores
    int lookahead = 256;       // a whole run of the imported CNNs (DenseNet-121: 246 calls)
    int resident_capacity = 256;
    bool trace = true;
    int debug_load_delay_ms = 0;
    int loader_yield_ms = 50;    // the longest a loader holds a plan's first run back while calls run
    bool explore = false;
    bool full_fp32 = false;      // float32_precision "highest": GPU float32 conv2d/gemm without TF32
    std::string kernel_dir;      // "" = the installed prebuilt folder
    std::string cpu_isa;
    std::string cache_dir;       // absolute, resolved once
    std::string cache_from;      // where it came from, for messages ("$PASKDNN_CACHE_DIR", "option cache_dir")
    std::string hints_file;
    std::string hints_from;
    // Backend and provider libraries, read by the device set-up (src/setup/).
    std::string nvrtc_library, cudnn_library, hip_library, hiprtc_library, miopen_library;
    bool use_cudnn = true, use_miopen = true;
    std::vector<const Solver *> allowed;  // empty: every solver

    // Whether the solver may run in this context (option "solvers").
    bool allows(const Solver &s) const;
    // Whether any allowed solver comes from the named provider ("cudnn").
    bool wants_provider(const char *provider) const;
    // Sets p.full_fp32 where this context's float32_precision applies to p
    // (float32 conv2d or gemm on a GPU).
    void set_precision(Problem &p) const;
};

// Throws Error(PASK_ERROR_INVALID_ARGUMENT) naming the key (or variable) at fault.
Options parse_options(pask_device_type_t type, const pask_options *options);

}  // namespace pask

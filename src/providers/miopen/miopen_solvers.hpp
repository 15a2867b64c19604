// The MIOpen provider's solvers (see miopen_provider.hpp).
#pragma once

#include "../../core/solver.hpp"

namespace pask::miopen {

extern const Solver &conv2d_miopen;      // MIOpen's first-ranked solution for the Problem
extern const Solver &conv2d_miopen_alt;  // its second-ranked solution (a distinct compiled kernel)
extern const Solver &pool2d_miopen;

}  // namespace pask::miopen

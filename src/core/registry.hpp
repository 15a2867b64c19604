// Registry: the ordered table of every solver (registry.cpp), read top to bottom.
#pragma once

#include <vector>

#include "solver.hpp"

namespace pask {

const std::vector<const Solver *> &all_solvers();
const Solver *find_solver(const std::string &name);

}  // namespace pask

// Registry: the ordered table of every solver, registered by the set-up
// outside the core (src/setup/solver_table.cpp, read top to bottom), and the
// device set-ups (device_setup.hpp).
#pragma once

#include <string>
#include <vector>

#include "solver.hpp"

namespace pask {

const std::vector<const Solver *> &all_solvers();
const Solver *find_solver(const std::string &name);
// Empty, or what is wrong with the registered table (a duplicate id or name).
const std::string &registry_problem();

}  // namespace pask

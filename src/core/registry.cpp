#include "registry.hpp"

#include <mutex>
#include <set>

#include "device_setup.hpp"

namespace pask {

namespace {

struct Tables {
    std::mutex mu;
    std::vector<const Solver *> solvers;
    std::vector<DeviceSetup> devices;
};

// Function-local: registration runs from other translation units' static
// initialisers, in no set order relative to this one.
Tables &tables() {
    static Tables t;
    return t;
}

}  // namespace

void register_solvers(const std::vector<const Solver *> &table) {
    // Only the pointers: the solvers may not be initialised yet (another
    // translation unit's static initialisation); they are read on first use.
    Tables &t = tables();
    std::lock_guard<std::mutex> lock(t.mu);
    t.solvers.insert(t.solvers.end(), table.begin(), table.end());
}

const std::vector<const Solver *> &all_solvers() { return tables().solvers; }

const Solver *find_solver(const std::string &name) {
    for (const Solver *s : all_solvers())
        if (name == s->name()) return s;
    return nullptr;
}

const std::string &registry_problem() {
    // Checked once, at the first context's creation: ids are append-only and
    // persisted (hints, load costs, traces), so a clash is a build defect.
    static const std::string problem = [] {
        std::set<int> ids;
        std::set<std::string> names;
        for (const Solver *s : all_solvers()) {
            if (!ids.insert(s->id()).second)
                return "solver id " + std::to_string(s->id()) + " (" + s->name() + ") is registered twice";
            if (!names.insert(s->name()).second) return std::string("solver name ") + s->name() + " is registered twice";
        }
        return std::string();
    }();
    return problem;
}

void register_device_setup(DeviceSetup setup) {
    Tables &t = tables();
    std::lock_guard<std::mutex> lock(t.mu);
    for (auto &d : t.devices)
        if (d.type == setup.type) {
            d = std::move(setup);
            return;
        }
    t.devices.push_back(std::move(setup));
}

const DeviceSetup *find_device_setup(pask_device_type_t type) {
    for (const auto &d : tables().devices)
        if (d.type == type) return &d;
    return nullptr;
}

}  // namespace pask

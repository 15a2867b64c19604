// Context: one device, its backend, kernel store, loader, resident set and
// dispatch policy. The object behind pask_context_t.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend.hpp"
#include "kernel_store.hpp"
#include "loader.hpp"
#include "resident_set.hpp"
#include "solver.hpp"

struct pask_options {
    std::map<std::string, std::string> values;
};

struct pask_context {
    pask_context(pask_device_type_t device_type, int device_index, const pask_options *options);
    ~pask_context();

    // Dispatcher: Problem -> solver choice -> resident or loaded kernel -> run.
    void execute(const pask::Problem &problem, const pask::OpArgs &args);

    pask_device_type_t device_type;
    int device_index;
    std::string policy = "reactive";
    std::string cache_dir;
    std::unique_ptr<pask::Backend> backend;
    std::unique_ptr<pask::KernelStore> store;
    std::unique_ptr<pask::Loader> loader;
    pask::ResidentSet resident;
    std::vector<const pask::Solver *> allowed;  // empty: every solver

private:
    std::vector<const pask::Solver *> candidates(const pask::Problem &problem) const;
    pask::KernelKey resolve_key(const pask::Solver &solver, const pask::Problem &problem) const;
    bool is_bad(const std::string &key) const;
    void mark_bad(const std::string &key);

    mutable std::mutex bad_mu_;
    std::unordered_set<std::string> bad_keys_;  // keys whose load failed in this context
};

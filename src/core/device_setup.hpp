// DeviceSetup: how the core gets a device's Backend and Providers, and the
// solver table, without including any of them. The set-up outside the core
// (src/setup/setup.cpp) registers one DeviceSetup per device type and the
// solver table when the library loads; the core only looks them up.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "options.hpp"
#include "paskdnn.h"
#include "provider.hpp"
#include "solver.hpp"

namespace pask {

class Trace;

struct DeviceSetup {
    pask_device_type_t type;
    // Devices of this type the process can use (0 when the driver is missing).
    std::function<int()> device_count;
    // The backend of device `index`; throws pask::Error (BACKEND_UNAVAILABLE, ...).
    std::function<std::unique_ptr<Backend>(int index, const Options &)> make_backend;
    // The vendor-library providers on that backend the options want (may be none).
    std::function<std::vector<std::unique_ptr<Provider>>(Backend &, const Options &, Trace *)> make_providers;
    // A JSON object saying what the vendor libraries of this type are on this
    // machine, as a context with these options would load them (pask_probe):
    // each library's name, file, version or why it cannot be used, and the
    // devices. Loads the libraries (once per process, as contexts do); never throws.
    std::function<std::string(const Options &)> probe;
    // Run-time compiled devices (CUDA, HIP): the compiler options of a native
    // kernel key (its target and constants as macros) and the embedded source
    // of a code object (nullptr when unknown). Need no device. Empty for the CPU.
    std::function<std::string(const KernelKey &)> rtc_options;
    std::function<const char *(const std::string &object)> kernel_source;
};

void register_device_setup(DeviceSetup setup);
// nullptr when no set-up registered the type.
const DeviceSetup *find_device_setup(pask_device_type_t type);

// The solver table, in order. Ids must be unique (registry_problem() checks
// them on first use; a clash makes context creation fail with
// PASK_ERROR_INTERNAL naming it).
void register_solvers(const std::vector<const Solver *> &table);

}  // namespace pask

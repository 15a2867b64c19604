// Backend: one device API (cpu now; cuda and hip slot in here). It loads code
// objects for the Loader and supplies the per-call execution services.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernel.hpp"
#include "paskdnn.h"

namespace pask {

class Backend {
public:
    virtual ~Backend() = default;
    virtual pask_device_type_t device_type() const = 0;
    virtual int device_index() const = 0;
    virtual const char *name() const = 0;
    // Targets this device can run, best first ("x86_64-avx512", "x86_64-avx2", "x86_64-generic").
    virtual const std::vector<std::string> &targets() const = 0;
    // Loads a code object from a file; throws pask::Error(PASK_ERROR_LOAD_FAILED) on failure.
    virtual std::shared_ptr<CodeObject> load_code_object(const std::string &path) = 0;
};

}  // namespace pask

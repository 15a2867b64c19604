// The CPU backend: host shared objects as code objects, a thread pool as the
// "stream", and ISA targets detected at run time (avx512 > avx2 > generic).
#pragma once

#include <memory>

#include "../../core/backend.hpp"
#include "../../kernels/cpu/kernel_abi.h"
#include "thread_pool.hpp"

namespace pask {

class CpuBackend final : public Backend {
public:
    // isa: "" (best the processor supports) or one of "avx512", "avx2", "generic".
    CpuBackend(int num_threads, const std::string &isa);
    pask_device_type_t device_type() const override { return PASK_DEVICE_CPU; }
    int device_index() const override { return 0; }
    const char *name() const override { return "cpu"; }
    const std::vector<std::string> &targets() const override { return targets_; }
    std::shared_ptr<CodeObject> load_code_object(const std::string &path) override;

    void *malloc_device(size_t bytes) const override;
    void free_device(void *p) const override;
    void copy(void *dst, const void *src, size_t bytes, int kind) const override;
    void set_stream(void *stream) const override;
    void synchronize() const override {}
    void check_device_pointer(const void *, const char *) const override {}

    const pask_cpu_runtime *runtime() const { return &runtime_; }
    int num_threads() const override { return pool_.num_threads(); }

    static bool isa_supported(const std::string &isa);

private:
    ThreadPool pool_;
    pask_cpu_runtime runtime_;
    std::vector<std::string> targets_;
};

}  // namespace pask

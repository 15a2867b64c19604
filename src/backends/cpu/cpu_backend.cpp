#include "cpu_backend.hpp"

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "../../core/error.hpp"

namespace pask {

namespace {

class SharedObject final : public CodeObject {
public:
    SharedObject(std::string path, void *handle) : CodeObject(std::move(path)), handle_(handle) {}
    ~SharedObject() override { ::dlclose(handle_); }
    void *symbol(const std::string &name) const override { return ::dlsym(handle_, name.c_str()); }

private:
    void *handle_;
};

void pool_parallel_for(void *self, int64_t ntasks, void (*fn)(void *, int64_t, int), void *arg) {
    static_cast<ThreadPool *>(self)->parallel_for(ntasks, fn, arg);
}

// Reads one byte a page of [lo, hi): the object's own read-only mapping, whose
// bytes ASan may count as its globals' redzones (tools/sanitize.sh builds the
// kernels with it), hence not instrumented.
__attribute__((no_sanitize("address"), noinline)) void touch_pages(uintptr_t lo, uintptr_t hi, uintptr_t page) {
    for (uintptr_t a = lo; a < hi; a += page) (void)*reinterpret_cast<const volatile unsigned char *>(a);
}

// Reads a byte of every page of the read-only segments (code, constants) of
// the object dlopen mapped at map, so that their page-table entries exist
// before the first call: a loader thread takes those faults (about 15 for a
// kernel object, the kernel mapping pages around each) instead of the first
// inference. Writable segments are left: a write would fault them again.
void fault_in_code(const link_map *map) {
    struct Target {
        const link_map *map;
        long page;
    } target{map, ::sysconf(_SC_PAGESIZE)};
    if (!map || target.page <= 0) return;
    ::dl_iterate_phdr(
        [](dl_phdr_info *info, size_t, void *data) -> int {
            const Target &t = *static_cast<const Target *>(data);
            if (info->dlpi_addr != t.map->l_addr || !info->dlpi_name || !t.map->l_name ||
                std::strcmp(info->dlpi_name, t.map->l_name) != 0)
                return 0;
            for (int i = 0; i < info->dlpi_phnum; ++i) {
                const ElfW(Phdr) &ph = info->dlpi_phdr[i];
                if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) || !(ph.p_flags & PF_R) || ph.p_memsz == 0) continue;
                const uintptr_t page = uintptr_t(t.page);
                const uintptr_t lo = (info->dlpi_addr + ph.p_vaddr) & ~(page - 1);
                const uintptr_t hi = info->dlpi_addr + ph.p_vaddr + ph.p_filesz;
                touch_pages(lo, hi, page);
            }
            return 1;  // found: stop
        },
        &target);
}

}  // namespace

bool CpuBackend::isa_supported(const std::string &isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (isa == "generic") return true;
    if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == "avx512")
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return false;
#else
    return isa == "generic";
#endif
}

CpuBackend::CpuBackend(int num_threads, const std::string &isa) : pool_(num_threads) {
    runtime_.self = &pool_;
    runtime_.num_threads = pool_.num_threads();
    runtime_.parallel_for = &pool_parallel_for;
    static const char *const order[] = {"avx512", "avx2", "generic"};
    if (!isa.empty()) {
        require(isa == "avx512" || isa == "avx2" || isa == "generic", PASK_ERROR_INVALID_ARGUMENT,
                "cpu_isa must be avx512, avx2 or generic, got '" + isa + "'");
        require(isa_supported(isa), PASK_ERROR_UNSUPPORTED, "this processor does not support cpu_isa=" + isa);
    }
    bool take = isa.empty();
    for (const char *o : order) {
        if (!take && isa == o) take = true;
        if (take && isa_supported(o)) targets_.push_back(std::string("x86_64-") + o);
    }
}

void *CpuBackend::malloc_device(size_t bytes) const {
    if (bytes > SIZE_MAX - 63) fail(PASK_ERROR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes");
    size_t rounded = ((bytes ? bytes : 1) + 63) / 64 * 64;
    void *p = std::aligned_alloc(64, rounded);
    if (!p) fail(PASK_ERROR_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes");
    return p;
}

void CpuBackend::free_device(void *p) const { std::free(p); }

void CpuBackend::copy(void *dst, const void *src, size_t bytes, int) const { std::memmove(dst, src, bytes); }

void CpuBackend::set_stream(void *stream) const {
    require(stream == nullptr, PASK_ERROR_INVALID_ARGUMENT, "the CPU device has no streams (pass NULL)");
}

std::shared_ptr<CodeObject> CpuBackend::load_code_object(const std::string &path) {
    ::dlerror();
    void *handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *why = ::dlerror();
        fail(PASK_ERROR_LOAD_FAILED, "cannot load " + path + ": " + (why ? why : "unknown dlopen error"));
    }
    auto obj = std::make_shared<SharedObject>(path, handle);
    link_map *map = nullptr;
    if (::dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0) fault_in_code(map);
    auto version = reinterpret_cast<pask_cpu_abi_version_fn>(obj->symbol("pask_cpu_abi_version"));
    if (!version || version() != PASK_CPU_ABI_VERSION)
        fail(PASK_ERROR_LOAD_FAILED, path + " is not a paskdnn CPU code object of ABI version " +
                                         std::to_string(PASK_CPU_ABI_VERSION));
    return obj;
}

}  // namespace pask

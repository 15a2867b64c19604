// A GPU run-time compiler loaded with dlopen: NVRTC and hiprtc have the same
// C API under two prefixes (nvrtc*, hiprtc*), so one table of entry points
// and one compile path serve both.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace pask::gpu {

using RtcProgram = struct RtcProgram_ *;  // nvrtcProgram / hiprtcProgram (opaque)

// What differs between the two compilers: symbol prefix and the code getters.
struct RtcNames {
    const char *prefix;     // "nvrtc": symbols <prefix>Version, <prefix>CreateProgram, ...
    const char *label;      // "NVRTC", in messages
    const char *code_size;  // "nvrtcGetCUBINSize"
    const char *code;       // "nvrtcGetCUBIN"
    const char *product;    // "cubin", in messages
};

struct Rtc {
    int (*version_fn)(int *, int *) = nullptr;
    // hiprtc declares the option arrays `const char **`: the same ABI.
    int (*create_program)(RtcProgram *, const char *, const char *, int, const char *const *,
                          const char *const *) = nullptr;
    int (*compile_program)(RtcProgram, int, const char *const *) = nullptr;
    int (*get_log_size)(RtcProgram, size_t *) = nullptr;
    int (*get_log)(RtcProgram, char *) = nullptr;
    int (*get_code_size)(RtcProgram, size_t *) = nullptr;
    int (*get_code)(RtcProgram, char *) = nullptr;
    int (*destroy_program)(RtcProgram *) = nullptr;
    const char *(*error_string)(int) = nullptr;
    // Optional (NVRTC 11.2+ only): the targets this compiler can compile for.
    int (*num_supported_archs)(int *) = nullptr;
    int (*supported_archs)(int *) = nullptr;
    int major = 0, minor = 0;  // <prefix>Version
    RtcNames names{};
    std::string version;  // "nvrtc-13.0", "hiprtc-6.0"
    std::string path;     // the library loaded (the name dlopen was given)
    std::string file;     // the file that is (a full path where the dynamic linker says)

    // The compiler from the first of candidates that loads, once per
    // (names.prefix, key) in a process. nullptr (with *why set) when none
    // loads or it lacks an entry point.
    static const Rtc *load(const RtcNames &names, const std::string &key, const std::vector<std::string> &candidates,
                           std::string *why);
    // Compiles source to a code object; throws pask::Error(PASK_ERROR_LOAD_FAILED) with the log.
    std::string compile(const std::string &source, const std::string &name, const std::string &options) const;

private:
    mutable std::mutex mu_;  // the compilers serialise compiles inside a process anyway
};

}  // namespace pask::gpu

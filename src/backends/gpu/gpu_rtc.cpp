#include "gpu_rtc.hpp"

#include <map>
#include <memory>
#include <sstream>

#include "../../core/dynlib.hpp"
#include "../../core/error.hpp"
#include "paskdnn.h"

namespace pask::gpu {

const Rtc *Rtc::load(const RtcNames &names, const std::string &key, const std::vector<std::string> &candidates,
                     std::string *why) {
    static std::mutex mu;
    static std::map<std::string, std::unique_ptr<Rtc>> loaded;
    std::lock_guard<std::mutex> lock(mu);
    const std::string full_key = std::string(names.prefix) + "|" + key;
    if (auto it = loaded.find(full_key); it != loaded.end()) return it->second.get();
    std::string tried, used;
    void *lib = dynlib::open_first(candidates, tried, &used);
    if (!lib) {
        if (why) *why = std::string(names.label) + " could not be loaded (" + tried + ")";
        return nullptr;
    }
    auto n = std::make_unique<Rtc>();
    const std::string p = names.prefix;
    std::string missing;
    dynlib::bind(lib, n->version_fn, (p + "Version").c_str(), missing);
    dynlib::bind(lib, n->create_program, (p + "CreateProgram").c_str(), missing);
    dynlib::bind(lib, n->compile_program, (p + "CompileProgram").c_str(), missing);
    dynlib::bind(lib, n->get_log_size, (p + "GetProgramLogSize").c_str(), missing);
    dynlib::bind(lib, n->get_log, (p + "GetProgramLog").c_str(), missing);
    dynlib::bind(lib, n->get_code_size, names.code_size, missing);
    dynlib::bind(lib, n->get_code, names.code, missing);
    dynlib::bind(lib, n->destroy_program, (p + "DestroyProgram").c_str(), missing);
    dynlib::bind(lib, n->error_string, (p + "GetErrorString").c_str(), missing);
    if (!missing.empty()) {
        if (why) *why = std::string(names.label) + " (" + used + ") lacks " + missing;
        return nullptr;
    }
    std::string optional;
    dynlib::bind(lib, n->num_supported_archs, (p + "GetNumSupportedArchs").c_str(), optional);
    dynlib::bind(lib, n->supported_archs, (p + "GetSupportedArchs").c_str(), optional);
    int major = 0, minor = 0;
    n->version_fn(&major, &minor);
    n->names = names;
    n->major = major;
    n->minor = minor;
    n->version = p + "-" + std::to_string(major) + "." + std::to_string(minor);
    n->path = used;
    n->file = dynlib::loaded_path(lib, used);
    const Rtc *out = n.get();
    loaded.emplace(full_key, std::move(n));
    return out;
}

std::string Rtc::compile(const std::string &source, const std::string &name, const std::string &options) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> opts;
    std::istringstream ss(options);
    for (std::string o; ss >> o;) opts.push_back(o);
    std::vector<const char *> argv;
    for (const auto &o : opts) argv.push_back(o.c_str());
    RtcProgram prog = nullptr;
    int r = create_program(&prog, source.c_str(), name.c_str(), 0, nullptr, nullptr);
    if (r != 0)
        fail(PASK_ERROR_LOAD_FAILED, std::string(names.prefix) + "CreateProgram: " + error_string(r));
    r = compile_program(prog, static_cast<int>(argv.size()), argv.data());
    std::string log;
    size_t log_size = 0;
    if (get_log_size(prog, &log_size) == 0 && log_size > 1) {
        log.resize(log_size);
        get_log(prog, &log[0]);
    }
    if (r != 0) {
        destroy_program(&prog);
        fail(PASK_ERROR_LOAD_FAILED, std::string(names.label) + " failed to compile " + name + " (" + options +
                                         "): " + error_string(r) + "\n" + log.substr(0, 4000));
    }
    size_t size = 0;
    std::string code;
    if (get_code_size(prog, &size) == 0 && size > 0) {
        code.resize(size);
        get_code(prog, &code[0]);
    }
    destroy_program(&prog);
    if (code.empty())
        fail(PASK_ERROR_LOAD_FAILED, std::string(names.label) + " produced no " + names.product + " for " + name);
    return code;
}

}  // namespace pask::gpu

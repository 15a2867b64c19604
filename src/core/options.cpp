#include "options.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#include <unistd.h>

#include "error.hpp"
#include "fsutil.hpp"
#include "registry.hpp"

namespace pask {

bool Options::allows(const Solver &s) const {
    if (allowed.empty()) return true;
    for (const Solver *a : allowed)
        if (a == &s) return true;
    return false;
}

bool Options::wants_provider(const char *provider) const {
    if (allowed.empty()) return true;
    for (const Solver *s : allowed)
        if (std::strcmp(s->provider(), provider) == 0) return true;
    return false;
}

void Options::set_precision(Problem &p) const {
    p.full_fp32 = full_fp32 && p.dtype == PASK_DTYPE_FLOAT32 && p.device != PASK_DEVICE_CPU &&
                  (p.op == PASK_OP_CONV2D || p.op == PASK_OP_GEMM);
}

namespace {

bool parse_precision(const std::string &key, const std::string &value) {
    if (value == "high") return false;
    if (value == "highest") return true;
    fail(PASK_ERROR_INVALID_ARGUMENT, "option " + key + " must be 'high' (float32 as TF32 on a GPU) or 'highest' "
                                      "(full float32), got '" + value + "'");
}

int parse_int(const std::string &key, const std::string &value, long lo, long hi) {
    errno = 0;
    char *end = nullptr;
    long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v < lo || v > hi)
        fail(PASK_ERROR_INVALID_ARGUMENT, "option " + key + " must be an integer in [" + std::to_string(lo) + ", " +
                                              std::to_string(hi) + "], got '" + value + "'");
    return static_cast<int>(v);
}

Policy parse_policy(const std::string &value) {
    for (Policy p : {Policy::Reactive, Policy::Proactive, Policy::Reuse, Policy::Pask})
        if (value == policy_name(p)) return p;
    fail(PASK_ERROR_INVALID_ARGUMENT, "policy must be reactive, proactive, reuse or pask, got '" + value + "'");
}

std::vector<const Solver *> parse_solvers(const std::string &value) {
    std::vector<const Solver *> out;
    size_t start = 0;
    while (start <= value.size()) {
        size_t comma = value.find(',', start);
        std::string name = value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!name.empty()) {
            const Solver *s = find_solver(name);
            if (!s) {
                std::string known;
                for (const auto *k : all_solvers()) known += std::string(known.empty() ? "" : ", ") + k->name();
                fail(PASK_ERROR_INVALID_ARGUMENT, "unknown solver '" + name + "'; known solvers: " + known);
            }
            out.push_back(s);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    require(!out.empty(), PASK_ERROR_INVALID_ARGUMENT, "option solvers names no solver");
    return out;
}

std::string non_empty(const std::string &key, const std::string &value) {
    require(!value.empty(), PASK_ERROR_INVALID_ARGUMENT, key + " must not be empty");
    return value;
}

// The default cache folder and where it came from (named in errors).
std::string default_cache_dir(std::string *from) {
    if (const char *d = std::getenv("PASKDNN_CACHE_DIR"); d && *d) return *from = "$PASKDNN_CACHE_DIR", d;
    if (const char *d = std::getenv("XDG_CACHE_HOME"); d && *d) return *from = "$XDG_CACHE_HOME", std::string(d) + "/paskdnn";
    if (const char *d = std::getenv("HOME"); d && *d) return *from = "$HOME", std::string(d) + "/.cache/paskdnn";
    return "";
}

// Resolved once, at creation: a later chdir() must not move where the context
// writes (load_costs.json at close) away from where it read.
std::string absolute(const std::string &path) {
    if (path.empty() || path[0] == '/') return path;
    std::string cwd(4096, '\0');
    if (!::getcwd(&cwd[0], cwd.size())) return path;
    cwd.resize(std::strlen(cwd.c_str()));
    return cwd + "/" + path;
}

using Setter = std::function<void(Options &, const std::string &key, const std::string &value)>;

// One row per option key, in the order the C header documents them.
const std::map<std::string, Setter> &setters() {
    static const std::map<std::string, Setter> table = {
        {"policy", [](Options &o, auto &, auto &v) { o.policy = parse_policy(v); }},
        {"num_threads", [](Options &o, auto &k, auto &v) { o.num_threads = parse_int(k, v, 1, 1024); }},
        {"loader_threads", [](Options &o, auto &k, auto &v) { o.loader_threads = parse_int(k, v, 0, 64); }},
        {"lookahead", [](Options &o, auto &k, auto &v) { o.lookahead = parse_int(k, v, 1, 1000000); }},
        {"resident_capacity", [](Options &o, auto &k, auto &v) { o.resident_capacity = parse_int(k, v, 0, 1000000); }},
        {"trace", [](Options &o, auto &k, auto &v) { o.trace = parse_int(k, v, 0, 1) != 0; }},
        {"loader_yield_ms", [](Options &o, auto &k, auto &v) { o.loader_yield_ms = parse_int(k, v, 0, 10000); }},
        {"debug_load_delay_ms", [](Options &o, auto &k, auto &v) { o.debug_load_delay_ms = parse_int(k, v, 0, 600000); }},
        {"kernel_dir", [](Options &o, auto &k, auto &v) { o.kernel_dir = non_empty(k, v); }},
        {"cache_dir", [](Options &o, auto &k, auto &v) { o.cache_dir = non_empty(k, v), o.cache_from = "option cache_dir"; }},
        {"hints_file", [](Options &o, auto &, auto &v) { o.hints_file = v, o.hints_from = "option hints_file"; }},
        {"cpu_isa", [](Options &o, auto &, auto &v) { o.cpu_isa = v; }},
        {"nvrtc_library", [](Options &o, auto &, auto &v) { o.nvrtc_library = v; }},
        {"cudnn", [](Options &o, auto &k, auto &v) { o.use_cudnn = parse_int(k, v, 0, 1) != 0; }},
        {"cudnn_library", [](Options &o, auto &, auto &v) { o.cudnn_library = v; }},
        {"explore", [](Options &o, auto &k, auto &v) { o.explore = parse_int(k, v, 0, 1) != 0; }},
        {"float32_precision", [](Options &o, auto &k, auto &v) { o.full_fp32 = parse_precision(k, v); }},
        {"hip_library", [](Options &o, auto &, auto &v) { o.hip_library = v; }},
        {"hiprtc_library", [](Options &o, auto &, auto &v) { o.hiprtc_library = v; }},
        {"miopen", [](Options &o, auto &k, auto &v) { o.use_miopen = parse_int(k, v, 0, 1) != 0; }},
        {"miopen_library", [](Options &o, auto &, auto &v) { o.miopen_library = v; }},
        {"solvers", [](Options &o, auto &, auto &v) { o.allowed = parse_solvers(v); }},
    };
    return table;
}

std::string known_keys() {
    std::string out;
    for (const auto &[key, _] : setters()) out += (out.empty() ? "" : ", ") + key;
    return out;
}

}  // namespace

Options parse_options(pask_device_type_t type, const pask_options *options) {
    Options o;
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    o.num_threads = static_cast<int>(cores);
    // GPU contexts build vendor plans (cuDNN heuristics, CPU-bound) on their
    // loader threads: more of them where the host has the cores.
    o.loader_threads = type == PASK_DEVICE_CPU || cores < 8 ? 2 : 4;
    if (const char *c = std::getenv("PASKDNN_CUDNN"); c && *c) o.cudnn_library = c;
    if (const char *h = std::getenv("PASKDNN_HINTS"); h && *h) o.hints_file = h, o.hints_from = "$PASKDNN_HINTS";
    o.cache_dir = default_cache_dir(&o.cache_from);
    if (options)
        for (const auto &[key, value] : options->values) {
            auto it = setters().find(key);
            if (it == setters().end())
                fail(PASK_ERROR_INVALID_ARGUMENT, "unknown option '" + key + "' (known: " + known_keys() + ")");
            it->second(o, key, value);
        }
    const char *y = std::getenv("PASKDNN_LOADER_YIELD_MS");  // where the option is not given
    if (y && *y && !(options && options->values.count("loader_yield_ms")))
        o.loader_yield_ms = parse_int("loader_yield_ms (from $PASKDNN_LOADER_YIELD_MS)", y, 0, 10000);
    o.cache_dir = absolute(o.cache_dir);
    require(o.cache_dir.size() <= kMaxPathBytes, PASK_ERROR_INVALID_ARGUMENT,
            "the cache folder (" + o.cache_from + ") is a path of " + std::to_string(o.cache_dir.size()) +
                " bytes; the limit is " + std::to_string(kMaxPathBytes));
    return o;
}

}  // namespace pask

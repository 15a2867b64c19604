#include "load_costs.hpp"

#include <cstdio>

#include "error.hpp"
#include "fsutil.hpp"
#include "json.hpp"

namespace pask {

namespace {
// Before a kernel's load has been measured: a host shared object loads in
// about a millisecond.
constexpr double kDefaultLoadMs = 1.0;
// ... and an NVRTC compile of one of our kernels takes 40-60 ms on an H100 host.
constexpr double kDefaultCompileMs = 100.0;
}  // namespace

void LoadCosts::load_file(const std::string &path) {
    // Missing (no record yet), oversized, not a regular file: ignored, like a damaged one.
    auto content = read_file(path, kMaxLoadCostsBytes);
    if (!content) return;
    const std::string &text = *content;
    try {
        json::Value doc = json::parse(text);
        const json::Value *loads = doc.get("load_ms");
        if (!loads || loads->kind != json::Value::Object) return;
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto &[key, v] : loads->obj) {
            if (ms_.size() >= kMaxEntries) break;
            if (v.kind == json::Value::Number && v.num >= 0 && v.num < 1e7 && looks_like_kernel_key(key)) ms_[key] = v.num;
        }
    } catch (const Error &) {
        // a damaged record is a miss, never an error
    }
}

void LoadCosts::save_file(const std::string &path) const {
    std::string out = "{\"format\": \"paskdnn-load-costs\", \"version\": 1, \"load_ms\": {";
    {
        std::lock_guard<std::mutex> lock(mu_);
        bool first = true;
        for (const auto &[key, ms] : ms_) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.6g", ms);
            out += std::string(first ? "\n  " : ",\n  ") + json::quote(key) + ": " + buf;
            first = false;
        }
    }
    out += "\n}}\n";
    write_file_atomic(path, out);
}

void LoadCosts::record(const KernelKey &key, double ms) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string k = key.str();
    auto it = ms_.find(k);
    if (it != ms_.end()) {
        it->second = 0.5 * it->second + 0.5 * ms;
    } else {
        if (ms_.size() >= kMaxEntries) ms_.erase(ms_.begin());  // bounded: any old entry makes room
        ms_.emplace(k, ms);
    }
    dirty_ = true;
}

// What KernelKey::str() writes: provider/backend/object:entry@target[...],
// printable, bounded. Anything else in the file was not written by paskdnn.
bool LoadCosts::looks_like_kernel_key(const std::string &k) {
    if (k.empty() || k.size() > 512) return false;
    for (char c : k)
        if (c < 0x21 || c > 0x7e) return false;
    const size_t slash = k.find('/'), colon = k.find(':'), at = k.find('@');
    return slash != std::string::npos && colon != std::string::npos && at != std::string::npos && slash < colon &&
           colon < at;
}

double LoadCosts::estimate_ms(const KernelKey &key, bool needs_compile) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = ms_.find(key.str());
    return it != ms_.end() ? it->second : needs_compile ? kDefaultCompileMs : kDefaultLoadMs;
}

bool LoadCosts::dirty() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dirty_;
}

}  // namespace pask

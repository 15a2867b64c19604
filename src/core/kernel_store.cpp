#include "kernel_store.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include "backend.hpp"
#include "error.hpp"
#include "fsutil.hpp"
#include "paskdnn.h"
#include "sha256.hpp"

namespace pask {

void Backend::fail_compile(const KernelKey &key) {
    fail(PASK_ERROR_LOAD_FAILED, "the " + key.backend + " backend cannot compile " + key.str());
}

void Backend::fail_bytes(const std::string &origin) {
    fail(PASK_ERROR_LOAD_FAILED, "this backend cannot load code objects from memory (" + origin + ")");
}

namespace {
constexpr const char *kMagic = "PASKDNN-CO1 ";
}

KernelStore::KernelStore(std::string prebuilt_dir, std::string suffix)
    : prebuilt_dir_(std::move(prebuilt_dir)), suffix_(std::move(suffix)) {}

std::string KernelStore::file_name(const KernelKey &key) const {
    std::string c;
    for (char ch : key.constants) c += (ch == ',' ? '.' : ch);
    return "pask_" + key.backend + "_" + key.object + (c.empty() ? "" : "." + c) + "." + key.target + suffix_;
}

std::optional<std::string> KernelStore::find(const KernelKey &key) const {
    std::string name = file_name(key);
    {
        std::lock_guard<std::mutex> lock(find_mu_);
        auto it = found_.find(name);
        if (it != found_.end()) return it->second;
    }
    std::string path = prebuilt_dir_ + "/" + name;
    struct stat st;
    std::optional<std::string> result;
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) result = path;
    std::lock_guard<std::mutex> lock(find_mu_);
    found_.emplace(std::move(name), result);
    return result;
}

std::string KernelStore::default_prebuilt_dir() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&pask_version_string), &info) == 0 || info.dli_fname == nullptr)
        return "kernels";
    std::string lib = info.dli_fname;
    auto slash = lib.rfind('/');
    std::string dir = slash == std::string::npos ? "." : lib.substr(0, slash);
    return dir + "/kernels";
}

void KernelStore::set_user_cache(const std::string &dir) {
    cache_dir_.clear();
    cache_problem_.clear();
    if (dir.empty()) {
        cache_problem_ = "no cache folder";
        return;
    }
    std::string why;
    if (!make_private_dir(dir)) {
        cache_problem_ = "cannot create " + dir;
        return;
    }
    if (!dir_is_private(dir, &why)) {
        cache_problem_ = why;
        return;
    }
    const std::string kdir = dir + "/kernels";
    if (!make_private_dir(kdir) || !dir_is_private(kdir, &why)) {
        cache_problem_ = why.empty() ? "cannot create " + kdir : why;
        return;
    }
    cache_dir_ = kdir;
}

std::string KernelStore::cache_path(const std::string &material) const {
    return cache_dir_ + "/" + sha256_hex(material + "\n" "paskdnn-" PASK_VERSION_STRING) + ".bin";
}

std::optional<std::string> KernelStore::cache_get(const std::string &material, bool *rejected) const {
    if (rejected) *rejected = false;
    if (cache_dir_.empty()) return std::nullopt;
    auto data = read_file(cache_path(material), kMaxCodeObjectBytes);
    if (!data) return std::nullopt;
    const size_t header = std::char_traits<char>::length(kMagic) + 64 + 1;
    if (data->size() < header || data->compare(0, std::char_traits<char>::length(kMagic), kMagic) != 0 ||
        (*data)[header - 1] != '\n') {
        if (rejected) *rejected = true;
        return std::nullopt;
    }
    std::string payload = data->substr(header);
    if (sha256_hex(payload) != data->substr(std::char_traits<char>::length(kMagic), 64)) {
        if (rejected) *rejected = true;
        return std::nullopt;
    }
    return payload;
}

bool KernelStore::cache_put(const std::string &material, const std::string &payload) const {
    if (cache_dir_.empty()) return false;
    return write_file_atomic(cache_path(material), std::string(kMagic) + sha256_hex(payload) + "\n" + payload);
}

void KernelStore::provide(const std::string &object_id, std::string bytes) {
    auto shared = std::make_shared<const std::string>(std::move(bytes));
    std::lock_guard<std::mutex> lock(provided_mu_);
    provided_[object_id] = std::move(shared);
}

std::shared_ptr<const std::string> KernelStore::provided(const KernelKey &key) const {
    std::lock_guard<std::mutex> lock(provided_mu_);
    if (provided_.empty()) return nullptr;
    auto it = provided_.find(key.object_id());
    return it == provided_.end() ? nullptr : it->second;
}

size_t KernelStore::provided_count() const {
    std::lock_guard<std::mutex> lock(provided_mu_);
    return provided_.size();
}

}  // namespace pask

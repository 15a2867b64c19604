// KernelStore: where code objects live. For host code (CPU kernels) only the
// read-only prebuilt store installed with the package is ever consulted, so a
// writable cache folder can never become code execution. GPU backends add the
// user cache (content-addressed, atomic, checksummed) behind the same lookup.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>

#include "kernel.hpp"

namespace pask {

//   user cache:  <cache_dir>/kernels/<sha256(material, paskdnn version)>.bin
//                "PASKDNN-CO1 <sha256(payload)>\n" + payload
// Writes are atomic (temporary file + rename); an entry whose header or
// checksum is wrong is a miss (and counted), never loaded.
class KernelStore {
public:
    KernelStore(std::string prebuilt_dir, std::string suffix);
    // Path of the prebuilt code object holding key, or nullopt.
    std::optional<std::string> find(const KernelKey &key) const;
    const std::string &prebuilt_dir() const { return prebuilt_dir_; }
    // File name of a code object: pask_<backend>_<object>[.<constants>].<target><suffix>
    std::string file_name(const KernelKey &key) const;
    // The prebuilt folder installed beside libpaskdnn (<libdir>/kernels).
    static std::string default_prebuilt_dir();

    // Enables the user cache in dir (created 0700). A folder not owned by this
    // user or writable by others is refused: the cache then stays off (memory
    // only) and cache_problem() says why.
    void set_user_cache(const std::string &dir);
    bool cache_enabled() const { return !cache_dir_.empty(); }
    const std::string &cache_problem() const { return cache_problem_; }
    // A verified cached payload for material; *rejected is set when an entry
    // existed but was damaged or foreign.
    std::optional<std::string> cache_get(const std::string &material, bool *rejected) const;
    // Stores payload atomically; false when the cache is off or the write failed.
    bool cache_put(const std::string &material, const std::string &payload) const;

    // Code objects handed in by the application (pask_context_add_code_object,
    // e.g. from a bundle), filed by KernelKey::object_id(); checked by the
    // caller before they are added. GPU backends only.
    void provide(const std::string &object_id, std::string bytes);
    std::shared_ptr<const std::string> provided(const KernelKey &key) const;
    size_t provided_count() const;

private:
    std::string cache_path(const std::string &material) const;

    std::string prebuilt_dir_;
    std::string suffix_;
    // find() is on every call's path: remember what the folder holds.
    mutable std::mutex find_mu_;
    mutable std::unordered_map<std::string, std::optional<std::string>> found_;
    std::string cache_dir_;
    std::string cache_problem_;
    mutable std::mutex provided_mu_;
    std::unordered_map<std::string, std::shared_ptr<const std::string>> provided_;
};

}  // namespace pask

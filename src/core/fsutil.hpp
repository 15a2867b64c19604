// File helpers: atomic writes, private folders, bounded whole-file reads.
//
// Every file the library writes goes through write_file_atomic, and every file
// it reads through read_file: the folders involved may be shared (a sticky
// /tmp) and the files may have been planted by another user.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace pask {

// Size caps on what the library reads (docs/reliability.md lists them).
constexpr size_t kMaxCodeObjectBytes = size_t(512) << 20;  // a cubin, hsaco or cached entry
constexpr size_t kMaxLoadCostsBytes = size_t(8) << 20;     // load_costs.json
constexpr size_t kMaxHintsBytes = size_t(64) << 20;        // a hints record
// Longest folder path the library creates (Linux's PATH_MAX, terminator included).
constexpr size_t kMaxPathBytes = 4095;

// Writes path atomically: a temporary file in the same folder under an
// unpredictable name (<path>.tmp.<random>), opened O_CREAT|O_EXCL|O_NOFOLLOW so
// a planted file or link at that name is never followed or truncated, then
// fsync and rename. Returns false, leaving no partial file, on any failure.
bool write_file_atomic(const std::string &path, const std::string &data);
// The whole file when it is a regular file of at most max_bytes; nullopt
// otherwise, with *why set ("does not exist", "is a folder", "is not a regular
// file", "is N bytes, over the limit of M", ...). Opened non-blocking, so a
// FIFO or a device never blocks the caller; /dev/zero is refused, not read.
std::optional<std::string> read_file(const std::string &path, size_t max_bytes, std::string *why = nullptr);
// Creates dir and its parents with mode 0700 (iteratively: any depth); false
// when it cannot, or when dir is longer than kMaxPathBytes.
bool make_private_dir(const std::string &dir);
// Whether dir is safe to keep cached binaries in: owned by this user and not
// writable by group or others. why is set when it is not.
bool dir_is_private(const std::string &dir, std::string *why);
// Deletes this user's regular files named *.tmp.* in dir whose last change is
// older than max_age_s: the temporaries of writers killed before their
// rename. Returns how many were removed.
int sweep_stale_temporaries(const std::string &dir, double max_age_s);

}  // namespace pask

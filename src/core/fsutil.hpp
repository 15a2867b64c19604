// File helpers: atomic writes, private folders, whole-file reads.
#pragma once

#include <optional>
#include <string>

namespace pask {

// Writes path atomically (a temporary file in the same folder, fsync, then
// rename). Returns false, leaving no partial file, on any failure.
bool write_file_atomic(const std::string &path, const std::string &data);
// The whole file, or nullopt when it cannot be read.
std::optional<std::string> read_file(const std::string &path);
// Creates dir and its parents with mode 0700; false when it cannot.
bool make_private_dir(const std::string &dir);
// Whether dir is safe to keep cached binaries in: owned by this user and not
// writable by group or others. why is set when it is not.
bool dir_is_private(const std::string &dir, std::string *why);

}  // namespace pask

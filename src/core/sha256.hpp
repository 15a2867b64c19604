// SHA-256 (FIPS 180-4), for content-addressed user-cache keys and checksums.
#pragma once

#include <string>

namespace pask {

// Lower-case hex digest of data.
std::string sha256_hex(const std::string &data);

}  // namespace pask

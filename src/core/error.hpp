// Error reporting inside the core: code throws pask::Error, the C API boundary
// (api.cpp) catches it, stores the message in a per-thread slot and returns the
// status. No exception ever crosses the C boundary.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>

#include "paskdnn.h"

namespace pask {

class Error : public std::runtime_error {
public:
    Error(pask_status_t status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    pask_status_t status() const { return status_; }

private:
    pask_status_t status_;
};

[[noreturn]] inline void fail(pask_status_t status, const std::string &message) {
    throw Error(status, message);
}

inline void require(bool ok, pask_status_t status, const std::string &message) {
    if (!ok) fail(status, message);
}

// A pointer (a stream, a handle) for a message: "0x7f..." or "NULL". printf,
// not a std::ostream: on the GPU machine's Python a numeric insertion into an
// ostringstream crashed (SIGSEGV in std::ostream::_M_insert) in this library
// and in the test double, so no message is built through iostreams.
inline std::string pointer_text(const void *p) {
    if (!p) return "NULL";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%p", p);
    return buf;
}

// Per-thread slots read by pask_last_error_message() and pask_last_solver().
void set_last_error(const std::string &message);
void clear_last_error();
const char *last_error();
void set_last_solver(const char *name);
const char *last_solver();
void set_last_decision(const char *decision);  // a static string
const char *last_decision();

// Checked size arithmetic: throws PASK_ERROR_OVERFLOW instead of wrapping.
int64_t checked_mul(int64_t a, int64_t b, const char *what);
int64_t checked_add(int64_t a, int64_t b, const char *what);

}  // namespace pask

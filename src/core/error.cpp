#include "error.hpp"

namespace pask {

namespace {
thread_local std::string t_last_error;
thread_local const char *t_last_solver = "";
thread_local const char *t_last_decision = "";
}  // namespace

void set_last_error(const std::string &message) { t_last_error = message; }
void clear_last_error() { t_last_error.clear(); }
const char *last_error() { return t_last_error.c_str(); }
void set_last_solver(const char *name) { t_last_solver = name ? name : ""; }
const char *last_solver() { return t_last_solver; }
void set_last_decision(const char *decision) { t_last_decision = decision ? decision : ""; }
const char *last_decision() { return t_last_decision; }

int64_t checked_mul(int64_t a, int64_t b, const char *what) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        fail(PASK_ERROR_OVERFLOW, std::string("size of ") + what + " overflows 64-bit arithmetic");
    return r;
}

int64_t checked_add(int64_t a, int64_t b, const char *what) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        fail(PASK_ERROR_OVERFLOW, std::string("size of ") + what + " overflows 64-bit arithmetic");
    return r;
}

}  // namespace pask

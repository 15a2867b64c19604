#include "provider.hpp"

#include <cstdlib>
#include <vector>

#include "error.hpp"

namespace pask {

std::string problem_constants(const Problem &p) {
    std::string s = "p=";
    bool first = true;
    for (int64_t v : p.fields()) {
        s += (first ? "" : "_") + std::to_string(v);
        first = false;
    }
    return s;
}

Problem parse_problem_constants(const KernelKey &key, std::map<std::string, int64_t> *values) {
    std::vector<int64_t> f;
    const std::string &c = key.constants;
    size_t start = 0;
    while (start < c.size()) {
        const size_t comma = c.find(',', start);
        const std::string kv = c.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        const size_t eq = kv.find('=');
        if (eq != std::string::npos) {
            const std::string name = kv.substr(0, eq);
            if (name == "p") {
                size_t i = eq + 1;
                while (i < kv.size()) {
                    const size_t u = kv.find('_', i);
                    f.push_back(std::strtoll(kv.substr(i, u == std::string::npos ? std::string::npos : u - i).c_str(),
                                             nullptr, 10));
                    if (u == std::string::npos) break;
                    i = u + 1;
                }
            } else if (values) {
                (*values)[name] = std::strtoll(kv.c_str() + eq + 1, nullptr, 10);
            }
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    require(!f.empty(), PASK_ERROR_LOAD_FAILED, "kernel key " + key.str() + " names no Problem");
    try {
        return Problem::from_fields(f);
    } catch (const Error &e) {
        fail(PASK_ERROR_LOAD_FAILED, "kernel key " + key.str() + ": " + e.what());
    }
}

}  // namespace pask

// A small JSON reader and string escaper for paskdnn's own files (recorded
// hints, load-cost records). Reading never throws past its caller's pask::Error:
// malformed input is reported as PASK_ERROR_INVALID_ARGUMENT.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pask::json {

struct Value {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    bool b = false;
    double num = 0;
    std::string str;
    std::vector<Value> arr;
    std::map<std::string, Value> obj;

    const Value *get(const std::string &key) const {
        auto it = obj.find(key);
        return kind == Object && it != obj.end() ? &it->second : nullptr;
    }
};

// Parses a whole document; throws pask::Error(PASK_ERROR_INVALID_ARGUMENT) on bad input.
Value parse(const std::string &text);

// A JSON string literal (quotes included).
std::string quote(const std::string &s);

}  // namespace pask::json

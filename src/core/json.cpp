#include "json.hpp"

#include <cstdio>
#include <cstdlib>

#include "error.hpp"

namespace pask::json {

namespace {

struct Parser {
    const std::string &s;
    size_t i = 0;
    int depth = 0;

    [[noreturn]] void bad(const char *what) {
        fail(PASK_ERROR_INVALID_ARGUMENT, std::string("malformed JSON at offset ") + std::to_string(i) + ": " + what);
    }
    void ws() {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
    }
    bool lit(const char *w) {
        size_t n = std::char_traits<char>::length(w);
        if (s.compare(i, n, w) == 0) {
            i += n;
            return true;
        }
        return false;
    }
    std::string string() {
        if (s[i] != '"') bad("expected a string");
        ++i;
        std::string out;
        while (i < s.size() && s[i] != '"') {
            char c = s[i++];
            if (c == '\\') {
                if (i >= s.size()) bad("unterminated escape");
                char e = s[i++];
                switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    if (i + 4 > s.size()) bad("short \\u escape");
                    unsigned v = static_cast<unsigned>(std::strtoul(s.substr(i, 4).c_str(), nullptr, 16));
                    i += 4;
                    if (v < 0x80) out += char(v);
                    else out += '?';
                    break;
                }
                default: out += e;
                }
            } else {
                out += c;
            }
        }
        if (i >= s.size()) bad("unterminated string");
        ++i;
        return out;
    }
    Value value() {
        if (++depth > 64) bad("nested too deeply");
        ws();
        if (i >= s.size()) bad("unexpected end");
        Value v;
        char c = s[i];
        if (c == '{') {
            v.kind = Value::Object;
            ++i;
            ws();
            if (i < s.size() && s[i] == '}') {
                ++i;
            } else {
                for (;;) {
                    ws();
                    if (i >= s.size()) bad("unexpected end");
                    std::string key = string();
                    ws();
                    if (i >= s.size() || s[i] != ':') bad("expected ':'");
                    ++i;
                    v.obj[key] = value();
                    ws();
                    if (i < s.size() && s[i] == ',') { ++i; continue; }
                    if (i < s.size() && s[i] == '}') { ++i; break; }
                    bad("expected ',' or '}'");
                }
            }
        } else if (c == '[') {
            v.kind = Value::Array;
            ++i;
            ws();
            if (i < s.size() && s[i] == ']') {
                ++i;
            } else {
                for (;;) {
                    v.arr.push_back(value());
                    ws();
                    if (i < s.size() && s[i] == ',') { ++i; continue; }
                    if (i < s.size() && s[i] == ']') { ++i; break; }
                    bad("expected ',' or ']'");
                }
            }
        } else if (c == '"') {
            v.kind = Value::String;
            v.str = string();
        } else if (lit("true")) {
            v.kind = Value::Bool;
            v.b = true;
        } else if (lit("false")) {
            v.kind = Value::Bool;
        } else if (lit("null")) {
            v.kind = Value::Null;
        } else {
            const char *start = s.c_str() + i;
            char *end = nullptr;
            v.num = std::strtod(start, &end);
            if (end == start) bad("unexpected character");
            v.kind = Value::Number;
            i += static_cast<size_t>(end - start);
        }
        --depth;
        return v;
    }
};

}  // namespace

Value parse(const std::string &text) {
    Parser p{text};
    Value v = p.value();
    p.ws();
    if (p.i != text.size()) p.bad("trailing characters");
    return v;
}

std::string quote(const std::string &s) {
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

}  // namespace pask::json

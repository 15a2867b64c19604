#include "trace.hpp"

#include <cstdio>

#include "json.hpp"

namespace pask {

int this_thread_tid() {
    static std::atomic<int> next{1};
    thread_local int tid = next.fetch_add(1);
    return tid;
}

Trace::Trace(size_t max_events) : origin_(std::chrono::steady_clock::now()), max_events_(max_events) {}

int64_t Trace::now_us() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - origin_).count();
}

void Trace::name_this_thread(const std::string &name) {
    std::lock_guard<std::mutex> lock(mu_);
    thread_names_[this_thread_tid()] = name;
}

void Trace::complete(const std::string &name, const char *cat, int64_t start_us, int64_t dur_us,
                     const std::string &args) {
    if (!enabled_) return;
    const int tid = this_thread_tid();
    std::lock_guard<std::mutex> lock(mu_);
    if (!admit(tid)) return;
    Event e(cat, tid, start_us, dur_us);
    e.name = name;
    e.args = args;
    events_.push_back(std::move(e));
}

void Trace::complete_call(int64_t start_us, int64_t dur_us, const char *op, const char *solver, const char *decision,
                          const char *best, std::shared_ptr<const std::string> problem) {
    if (!enabled_) return;
    const int tid = this_thread_tid();
    std::lock_guard<std::mutex> lock(mu_);
    if (!admit(tid)) return;
    Event e("call", tid, start_us, dur_us);
    e.op = op;
    e.solver = solver;
    e.decision = decision;
    e.best = best;
    e.problem = std::move(problem);
    events_.push_back(std::move(e));
}

bool Trace::admit(int tid) {
    if (!thread_names_.count(tid)) thread_names_[tid] = "caller " + std::to_string(tid);
    if (events_.size() >= max_events_) {
        ++dropped_;
        return false;
    }
    return true;
}

size_t Trace::size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
}

std::string Trace::to_json() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"paskdnn\",\"dropped_events\":" +
                      std::to_string(dropped_) + "},\"traceEvents\":[\n";
    bool first = true;
    auto sep = [&] {
        if (!first) out += ",\n";
        first = false;
    };
    sep();
    out += "{\"ph\":\"M\",\"pid\":1,\"tid\":0,\"name\":\"process_name\",\"args\":{\"name\":\"paskdnn context\"}}";
    for (const auto &[tid, name] : thread_names_) {
        sep();
        out += "{\"ph\":\"M\",\"pid\":1,\"tid\":" + std::to_string(tid) +
               ",\"name\":\"thread_name\",\"args\":{\"name\":" + json::quote(name) + "}}";
        sep();
        // loaders sort below callers
        int order = name.rfind("loader", 0) == 0 ? 1000 + tid : tid;
        out += "{\"ph\":\"M\",\"pid\":1,\"tid\":" + std::to_string(tid) +
               ",\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":" + std::to_string(order) + "}}";
    }
    for (const auto &e : events_) {
        sep();
        const std::string name = e.op ? std::string(e.op) + " " + e.solver : e.name;
        out += "{\"ph\":\"X\",\"pid\":1,\"tid\":" + std::to_string(e.tid) + ",\"name\":" + json::quote(name) +
               ",\"cat\":\"" + e.cat + "\",\"ts\":" + std::to_string(e.ts) + ",\"dur\":" + std::to_string(e.dur);
        if (e.op)
            out += ",\"args\":{\"problem\":" + (e.problem ? *e.problem : std::string("null")) +
                   ",\"solver\":" + json::quote(e.solver) + ",\"decision\":\"" + e.decision +
                   "\",\"best\":" + json::quote(e.best) + "}";
        else if (!e.args.empty())
            out += ",\"args\":{" + e.args + "}";
        out += "}";
    }
    out += "\n]}\n";
    return out;
}

}  // namespace pask

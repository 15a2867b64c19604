#include "capture.hpp"

#include <unordered_map>
#include <vector>

#include "error.hpp"

namespace pask {

// ---- Backend defaults: no streams of our own, no capture -----------------------------

void *Backend::stream_create() const { fail_capture(); }
void Backend::stream_destroy(void *) const { fail_capture(); }
void Backend::capture_begin(void *) const { fail_capture(); }
std::unique_ptr<GraphExec> Backend::capture_end(void *) const { fail_capture(); }
void Backend::fail_capture() const { fail(PASK_ERROR_UNSUPPORTED, capture_problem()); }

// ---- captures in progress ------------------------------------------------------------

ActiveCapture *Captures::find_mine() {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_thread_.find(std::this_thread::get_id());
    return it == by_thread_.end() ? nullptr : &it->second;
}

void Captures::add(void *stream, int64_t t_begin_us) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto me = std::this_thread::get_id();
    auto mine = by_thread_.find(me);
    if (mine != by_thread_.end())
        fail(PASK_ERROR_INVALID_ARGUMENT, "this thread is already capturing stream " + pointer_text(mine->second.stream) +
                                              " on this context; end that capture first");
    for (const auto &[thread, c] : by_thread_)
        if (c.stream == stream)
            fail(PASK_ERROR_INVALID_ARGUMENT,
                 "stream " + pointer_text(stream) + " is being captured by another thread on this context");
    ActiveCapture c;
    c.stream = stream;
    c.t_begin_us = t_begin_us;
    by_thread_.emplace(me, c);
    active_.fetch_add(1, std::memory_order_release);
}

ActiveCapture Captures::take() {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_thread_.find(std::this_thread::get_id());
    require(it != by_thread_.end(), PASK_ERROR_INVALID_ARGUMENT,
            "no graph capture is in progress on this thread for this context (never begun, already ended, or "
            "ended by a call that failed during it)");
    ActiveCapture c = it->second;
    by_thread_.erase(it);
    active_.fetch_sub(1, std::memory_order_release);
    return c;
}

bool Captures::captures(void *stream) const {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto &[thread, c] : by_thread_)
        if (c.stream == stream) return true;
    return false;
}

// ---- graph handles ---------------------------------------------------------------------

namespace {
std::mutex g_graphs_mu;
std::unordered_map<uintptr_t, std::shared_ptr<CapturedGraph>> g_graphs;
uintptr_t g_next_graph = 0x1000;  // ids advance by 16: handles look like (aligned) pointers, none reused

const char *kNotLive = "graph handle is not a live graph (destroyed, its context closed, or never made)";
}  // namespace

pask_graph_t register_graph(std::shared_ptr<CapturedGraph> g) {
    std::lock_guard<std::mutex> lock(g_graphs_mu);
    const uintptr_t id = (g_next_graph += 16);
    g_graphs.emplace(id, std::move(g));
    return reinterpret_cast<pask_graph_t>(id);
}

std::shared_ptr<CapturedGraph> find_graph(const_pask_graph_t handle) {
    std::lock_guard<std::mutex> lock(g_graphs_mu);
    auto it = g_graphs.find(reinterpret_cast<uintptr_t>(handle));
    require(it != g_graphs.end(), PASK_ERROR_INVALID_ARGUMENT, kNotLive);
    return it->second;
}

std::shared_ptr<CapturedGraph> remove_graph(pask_graph_t handle) {
    std::lock_guard<std::mutex> lock(g_graphs_mu);
    auto it = g_graphs.find(reinterpret_cast<uintptr_t>(handle));
    require(it != g_graphs.end(), PASK_ERROR_INVALID_ARGUMENT, kNotLive);
    auto g = std::move(it->second);
    g_graphs.erase(it);
    return g;
}

void remove_graphs_of(const pask_context *context) {
    std::vector<std::shared_ptr<CapturedGraph>> gone;  // released outside the lock
    std::lock_guard<std::mutex> lock(g_graphs_mu);
    for (auto it = g_graphs.begin(); it != g_graphs.end();) {
        if (it->second->context == context) {
            gone.push_back(std::move(it->second));
            it = g_graphs.erase(it);
        } else {
            ++it;
        }
    }
}

}  // namespace pask

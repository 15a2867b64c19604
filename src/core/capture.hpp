// Capture: prepared calls recorded as a device graph and replayed
// (pask_graph_capture_begin / _end, pask_graph_launch).
//
//   capture_begin(stream) ─> calls on that stream, this thread: dispatched as
//   usual, but only onto resident kernels (a load, a wait for a load or a
//   synchronising call fails the call and ends the capture, discarded)
//   ─> capture_end ─> GraphExec (the backend's) ─> launch(stream) ... many times
//
// Captures are per (context, thread): a context's Captures says which thread
// captures which stream. Graph handles are ids, never reused, so a handle used
// after pask_graph_destroy (or its context's close) is refused with a message
// instead of reaching freed memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend.hpp"
#include "kernel.hpp"
#include "paskdnn.h"
#include "problem.hpp"

struct pask_context;

namespace pask {

// One captured call: what it ran, held for the graph's life (a module
// unloaded or a plan destroyed under a graph would leave it dangling).
struct CapturedCall {
    Problem problem;
    size_t hash = 0;
    std::string key;  // the kernel's key string
    KernelPtr kernel;
};

// One thread's capture in progress on one context.
struct ActiveCapture {
    void *stream = nullptr;
    int64_t calls = 0;   // calls captured so far
    int64_t reuses = 0;  // of those, calls run on a resident stand-in while their best kernel loads
    int64_t t_begin_us = 0;
    std::vector<CapturedCall> held;
};

// The captures in progress on one context, by thread.
class Captures {
public:
    // The calling thread's capture, nullptr when none: one atomic load when no
    // thread of the context captures (every call asks).
    ActiveCapture *current() {
        if (active_.load(std::memory_order_acquire) == 0) return nullptr;
        return find_mine();
    }
    // Files the calling thread's capture of stream; throws
    // PASK_ERROR_INVALID_ARGUMENT when this thread captures already or
    // another thread captures that stream.
    void add(void *stream, int64_t t_begin_us);
    // Removes and returns the calling thread's capture; throws
    // PASK_ERROR_INVALID_ARGUMENT when there is none.
    ActiveCapture take();
    // Whether some thread captures stream.
    bool captures(void *stream) const;

private:
    ActiveCapture *find_mine();

    std::atomic<int> active_{0};
    mutable std::mutex mu_;
    std::map<std::thread::id, ActiveCapture> by_thread_;  // nodes are stable: each thread keeps a pointer to its own
};

// A graph made by pask_graph_capture_end (the object behind a pask_graph_t id).
struct CapturedGraph {
    pask_context *context = nullptr;
    std::unique_ptr<GraphExec> exec;
    void *stream = nullptr;  // the stream it was captured on
    int64_t calls = 0, reuses = 0;
    std::vector<CapturedCall> held;
    std::atomic<int64_t> launches{0};
};

// Files g and returns its handle (a fresh id).
pask_graph_t register_graph(std::shared_ptr<CapturedGraph> g);
// The live graph of a handle; throws PASK_ERROR_INVALID_ARGUMENT for a handle
// that was destroyed, belonged to a closed context, or was never made.
std::shared_ptr<CapturedGraph> find_graph(const_pask_graph_t handle);
// Removes the handle's graph (freed when no launch holds it any more); throws
// like find_graph.
std::shared_ptr<CapturedGraph> remove_graph(pask_graph_t handle);
// Removes every graph of a context (its close: the device goes away).
void remove_graphs_of(const pask_context *context);

}  // namespace pask

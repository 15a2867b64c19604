// Backend: one device API (cpu now; cuda and hip slot in here). It loads code
// objects for the Loader and supplies the per-call execution services.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernel.hpp"
#include "paskdnn.h"

namespace pask {

// An instantiated graph of captured device work (a CUDA graph's executable
// form), replayed with launch(). Destroying it releases the device's graph.
class GraphExec {
public:
    virtual ~GraphExec() = default;
    // Queues one replay on stream; throws pask::Error on failure.
    virtual void launch(void *stream) const = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual pask_device_type_t device_type() const = 0;
    virtual int device_index() const = 0;
    virtual const char *name() const = 0;
    // Host threads its kernels run on (the CPU's pool; 1 on a GPU).
    virtual int num_threads() const { return 1; }
    // Targets this device can run, best first ("x86_64-avx512", "x86_64-avx2", "x86_64-generic").
    virtual const std::vector<std::string> &targets() const = 0;
    // Loads a code object from a file; throws pask::Error(PASK_ERROR_LOAD_FAILED) on failure.
    virtual std::shared_ptr<CodeObject> load_code_object(const std::string &path) = 0;
    // File name suffix of code objects in a store (".so", ".cubin").
    virtual const char *object_suffix() const { return ".so"; }

    // Run-time compilation (GPU backends): code objects missing from the
    // prebuilt store are compiled into the user cache. Host code never is.
    virtual bool can_compile() const { return false; }
    // Why can_compile() is false ("" when it is true or there is nothing to say).
    virtual std::string compile_problem() const { return std::string(); }
    // Everything that changes the binary of key: source, options, compiler
    // version, target; the store hashes it (with paskdnn's version) into the
    // cache key.
    virtual std::string compile_material(const KernelKey &) const { return std::string(); }
    virtual std::string compile(const KernelKey &key) {
        fail_compile(key);
        return std::string();
    }
    virtual std::shared_ptr<CodeObject> load_code_object_bytes(const std::string &bytes, const std::string &origin) {
        (void)bytes;
        fail_bytes(origin);
        return nullptr;
    }

    // Memory and ordering (host memory and no streams on the CPU).
    virtual void *malloc_device(size_t bytes) const = 0;
    virtual void free_device(void *p) const = 0;
    virtual void copy(void *dst, const void *src, size_t bytes, int kind) const = 0;
    virtual void set_stream(void *stream) const = 0;
    // The calling thread's stream (NULL: the default stream; always NULL on the CPU).
    virtual void *get_stream() const { return nullptr; }
    virtual void synchronize() const = 0;
    // Device run times, read later without blocking (GPU backends: an event
    // pair on the calling thread's stream). timer_start returns a token, or -1
    // when it cannot time now (e.g. a stream being captured into a graph).
    // timer_poll: false while the work runs; true when done, with *us the
    // time or -1 if it could not be read. Every started token is polled to
    // completion or released with timer_release.
    virtual int64_t timer_start() const { return -1; }
    virtual void timer_stop(int64_t) const {}
    virtual bool timer_poll(int64_t, double *us) const {
        *us = -1;
        return true;
    }
    virtual void timer_release(int64_t) const {}
    // Runs first on each loader thread (GPU: loader threads never capture
    // graphs, so they take the relaxed capture mode and cannot break a
    // caller's capture).
    virtual void loader_thread_started() const {}
    // Streams of the library's own and graph capture (GPU backends that bind
    // the driver's capture API). capture_problem(): why this backend cannot
    // create streams or capture ("" when it can); the others throw
    // PASK_ERROR_UNSUPPORTED with that text when it is not "".
    virtual std::string capture_problem() const {
        return std::string("graph capture needs a CUDA context; the ") + name() + " backend runs every call eagerly";
    }
    virtual void *stream_create() const;
    virtual void stream_destroy(void *stream) const;
    // Starts capturing the work queued on stream (never the default stream)
    // by this thread; the capture mode refuses unsafe calls of this thread only.
    virtual void capture_begin(void *stream) const;
    // Ends the capture on stream and instantiates the graph; throws on failure
    // (the capture has ended either way, nothing is kept).
    virtual std::unique_ptr<GraphExec> capture_end(void *stream) const;
    // Ends a capture whose graph is not wanted; never throws.
    virtual void capture_abort(void *stream) const noexcept { (void)stream; }
    // Throws PASK_ERROR_INVALID_ARGUMENT when p cannot be used by this device.
    virtual void check_device_pointer(const void *p, const char *what) const = 0;

private:
    [[noreturn]] void fail_capture() const;
    [[noreturn]] static void fail_compile(const KernelKey &key);
    [[noreturn]] static void fail_bytes(const std::string &origin);
};

}  // namespace pask

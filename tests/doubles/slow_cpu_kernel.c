/* A CPU kernel code object that forwards its entry point to the real code
 * object after a pause: a solver that runs far slower than its cost model's
 * estimate, for the CPU trial test (tests/test_pask.py). Built by the test:
 *
 *   cc -shared -fPIC -DREAL_OBJECT='"/path/pask_cpu_conv_im2col.x86_64-avx2.so"' \
 *      -DENTRY=pask_conv2d_im2col_f32 -DPAUSE_NS=5000000 slow_cpu_kernel.c -ldl
 */
#define _POSIX_C_SOURCE 199309L
#include <dlfcn.h>
#include <stdint.h>
#include <time.h>

#if !defined(REAL_OBJECT) || !defined(ENTRY) || !defined(PAUSE_NS)
#error "define REAL_OBJECT (the real code object's path), ENTRY (its entry point) and PAUSE_NS"
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

typedef int (*entry_fn)(const void *, const void *);
typedef uint32_t (*abi_fn)(void);

static void *real(void) {
    static void *handle;
    if (!handle) handle = dlopen(REAL_OBJECT, RTLD_NOW | RTLD_LOCAL);
    return handle;
}

__attribute__((visibility("default"))) uint32_t pask_cpu_abi_version(void) {
    abi_fn f = real() ? (abi_fn)dlsym(real(), "pask_cpu_abi_version") : 0;
    return f ? f() : 0;
}

__attribute__((visibility("default"))) int ENTRY(const void *runtime, const void *args) {
    if (PAUSE_NS > 0) {
        struct timespec pause = {PAUSE_NS / 1000000000L, PAUSE_NS % 1000000000L};
        nanosleep(&pause, 0);
    }
    entry_fn f = real() ? (entry_fn)dlsym(real(), STR(ENTRY)) : 0;
    return f ? f(runtime, args) : 4; /* PASK_ERROR_UNSUPPORTED */
}

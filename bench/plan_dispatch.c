/* Host time of one call dispatched to a resident kernel, through the C API:
 * the eager entry points (validate, hash, dispatch every call) against a
 * prepared call (pask_plan_execute: pointers checked, then dispatch). The ops
 * are tiny (gemm 1x1x1, conv 1x1 on 1x1x2x2, 2x2 max pool), so the kernels'
 * own time is small beside the dispatch; on a GPU, launches are asynchronous
 * and the figure is host time per call (one synchronise at the end).
 *
 * On a GPU it also times the floor under every launch: a bare cuLaunchKernel
 * of an empty kernel with a 128-byte parameter block (about the size of the
 * gemm's), through the driver directly; a plan's figure less this one is
 * paskdnn's own host time per call.
 *
 *   bench/plan_dispatch.py builds and runs it: python3 bench/plan_dispatch.py [--device cuda]
 *   ./plan_dispatch cpu|cuda [iterations [native]]   (native: paskdnn's own kernels, no cuDNN)
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dlfcn.h>
#include <paskdnn.h>

#define CHECK(call)                                                                           \
    do {                                                                                      \
        pask_status_t s_ = (call);                                                            \
        if (s_ != PASK_SUCCESS) {                                                             \
            fprintf(stderr, "%s: %s\n", #call, pask_last_error_message());                   \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static pask_context_t ctx;
static void *buf(size_t bytes) {
    void *p = NULL;
    CHECK(pask_malloc(ctx, bytes, &p));
    return p;
}

/* The driver's own cost of one launch: an empty kernel (PTX, JIT-compiled for
 * the card) with a 128-byte by-value parameter, launched iters times on the
 * legacy default stream of the primary context; host us per launch, or a
 * negative number where the driver or a call is missing. */
static double bare_launch_us(long iters) {
    typedef int (*fn_t)(); /* the calls below pass int, unsigned and pointer arguments as declared in cuda.h */
    typedef int (*launch_t)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                            void **, void **);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    fn_t init = (fn_t)dlsym(lib, "cuInit"), retain = (fn_t)dlsym(lib, "cuDevicePrimaryCtxRetain"),
         push = (fn_t)dlsym(lib, "cuCtxPushCurrent_v2"), pop = (fn_t)dlsym(lib, "cuCtxPopCurrent_v2"),
         load = (fn_t)dlsym(lib, "cuModuleLoadData"), get = (fn_t)dlsym(lib, "cuModuleGetFunction"),
         sync = (fn_t)dlsym(lib, "cuCtxSynchronize"),
         unload = (fn_t)dlsym(lib, "cuModuleUnload");
    launch_t launch = (launch_t)dlsym(lib, "cuLaunchKernel");
    if (!init || !retain || !push || !pop || !load || !get || !launch || !sync || !unload) return -2;
    static const char ptx[] = ".version 7.5\n.target sm_75\n.address_size 64\n"
                              ".visible .entry pask_empty(.param .align 8 .b8 p[128]) { ret; }\n";
    void *cu_ctx = NULL, *mod = NULL, *fn = NULL, *popped = NULL;
    unsigned char params[128] = {0};
    void *args[1] = {params};
    if (init(0) || retain(&cu_ctx, 0) || push(cu_ctx)) return -3;
    double per = -4;
    if (load(&mod, ptx) == 0 && get(&fn, mod, "pask_empty") == 0) {
        for (long i = 0; i < 2000; ++i) launch(fn, 1u, 1u, 1u, 32u, 1u, 1u, 0u, NULL, args, NULL);
        sync();
        const double t0 = now_us();
        long i = 0;
        for (; i < iters; ++i)
            if (launch(fn, 1u, 1u, 1u, 32u, 1u, 1u, 0u, NULL, args, NULL)) break;
        per = i == iters ? (now_us() - t0) / iters : -5;
        sync();
        unload(mod);
    }
    pop(&popped);
    return per;
}

int main(int argc, char **argv) {
    const int cuda = argc > 1 && strcmp(argv[1], "cuda") == 0;
    const long iters = argc > 2 ? atol(argv[2]) : 200000;
    pask_options_t opts;
    CHECK(pask_options_create(&opts));
    CHECK(pask_options_set(opts, "trace", "0"));
    if (!cuda) CHECK(pask_options_set(opts, "num_threads", "1"));
    if (cuda && argc > 3 && strcmp(argv[3], "native") == 0) CHECK(pask_options_set(opts, "cudnn", "0"));
    CHECK(pask_context_create(&ctx, cuda ? PASK_DEVICE_CUDA : PASK_DEVICE_CPU, 0, opts));
    pask_options_destroy(opts);
    const pask_dtype_t dt = cuda ? PASK_DTYPE_FLOAT16 : PASK_DTYPE_FLOAT32;
    const int64_t xdims[4] = {1, 8, 2, 2}, wdims[4] = {8, 8, 1, 1}, bdims[1] = {8}, pdims[4] = {1, 8, 1, 1};
    const pask_layout_t lay = cuda ? PASK_LAYOUT_NHWC : PASK_LAYOUT_NCHW;
    pask_tensor_desc_t xd, wd, bd, yd, pd;
    CHECK(pask_tensor_desc_create(&xd, dt, lay, 4, xdims));
    CHECK(pask_tensor_desc_create(&wd, dt, lay, 4, wdims));
    CHECK(pask_tensor_desc_create(&bd, dt, PASK_LAYOUT_ROW_MAJOR, 1, bdims));
    CHECK(pask_tensor_desc_create(&yd, dt, lay, 4, xdims));
    CHECK(pask_tensor_desc_create(&pd, dt, lay, 4, pdims));
    void *x = buf(256), *w = buf(256), *b = buf(64), *y = buf(256), *py = buf(64);
    void *zeros = calloc(1, 256);
    CHECK(pask_memcpy(ctx, x, zeros, 256, PASK_COPY_HOST_TO_DEVICE));
    CHECK(pask_memcpy(ctx, w, zeros, 256, PASK_COPY_HOST_TO_DEVICE));
    CHECK(pask_memcpy(ctx, b, zeros, 64, PASK_COPY_HOST_TO_DEVICE));
    pask_conv2d_params_t cp = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    pask_pool2d_params_t pp = {PASK_POOL_MAX, {2, 2}, {2, 2}, {0, 0}, {0, 0}, {1, 1}, 0, 0, 0};
    pask_epilogue_t ep = {1.0f, 0.0f, PASK_ACTIVATION_RELU};
    pask_plan_t conv, gemm, pool;
    CHECK(pask_plan_create_conv2d(&conv, ctx, &cp, &ep, xd, wd, bd, NULL, yd));
    CHECK(pask_plan_create_gemm(&gemm, ctx, dt, 0, 1, 1, 8, 8, &ep, 8, 8, 8, 1));
    CHECK(pask_plan_create_pool2d(&pool, ctx, &pp, xd, pd));
    pask_plan_args_t ca = {.x = x, .w = w, .bias = b, .y = y}, ga = {.x = x, .w = w, .bias = b, .y = y},
                     pa = {.x = x, .y = py};

    /* PLAN_DISPATCH_HINTS=N: N pending hints that no call matches (gemms of other
       sizes), as hints recorded at another batch size would be: every call looks
       itself up among them */
    const char *pending = getenv("PLAN_DISPATCH_HINTS");
    for (long i = 0; pending && i < atol(pending); ++i)
        CHECK(pask_hint_gemm(ctx, dt, 0, 1, 100 + i, 8, 8, &ep, 8, 8, 8, 1));
    /* the three plans as one sequence (pask_plan_execute_sequence), against the three executed one by one */
    const_pask_plan_t seq_plans[3] = {conv, gemm, pool};
    const pask_plan_args_t *seq_args[3] = {&ca, &ga, &pa};
    const char *names[8] = {"conv2d 1x1 + bias + relu, eager", "conv2d 1x1 + bias + relu, plan",
                            "gemm 1x8x8 + bias + relu, eager", "gemm 1x8x8 + bias + relu, plan",
                            "max_pool2d 2x2, eager", "max_pool2d 2x2, plan",
                            "the 3 plans, one by one (per 3)", "the 3 plans, one sequence (per 3)"};
    for (int round = 0; round < 2; ++round) { /* round 0 warms up: loads, timings settle */
        for (int k = 0; k < 8; ++k) {
            const long n = round == 0 ? 2000 : iters;
            CHECK(pask_synchronize(ctx));
            double t0 = now_us();
            for (long i = 0; i < n; ++i) {
                pask_status_t s;
                switch (k) {
                case 0: s = pask_conv2d_forward(ctx, &cp, &ep, xd, x, wd, w, bd, b, NULL, NULL, yd, y); break;
                case 1: s = pask_plan_execute(conv, &ca, NULL); break;
                case 2: s = pask_gemm(ctx, dt, 0, 1, 1, 8, 8, &ep, x, 8, w, 8, b, y, 8); break;
                case 3: s = pask_plan_execute(gemm, &ga, NULL); break;
                case 4: s = pask_pool2d_forward(ctx, &pp, xd, x, pd, py); break;
                case 5: s = pask_plan_execute(pool, &pa, NULL); break;
                case 6:
                    s = pask_plan_execute(conv, &ca, NULL);
                    if (s == PASK_SUCCESS) s = pask_plan_execute(gemm, &ga, NULL);
                    if (s == PASK_SUCCESS) s = pask_plan_execute(pool, &pa, NULL);
                    break;
                default: s = pask_plan_execute_sequence(seq_plans, seq_args, 3, NULL, NULL, NULL, NULL); break;
                }
                if (s != PASK_SUCCESS) {
                    fprintf(stderr, "%s: %s\n", names[k], pask_last_error_message());
                    return 1;
                }
            }
            const double host = now_us() - t0;
            CHECK(pask_synchronize(ctx));
            if (round == 1)
                printf("%-36s %8.3f us/call host  (%s, solver %s)\n", names[k], host / n, cuda ? "cuda" : "cpu",
                       pask_last_solver());
        }
    }
    if (cuda) printf("%-36s %8.3f us/call host  (cuda, the driver's floor; a negative figure: not measured)\n",
                     "bare cuLaunchKernel, empty kernel", bare_launch_us(iters));
    pask_plan_destroy(conv);
    pask_plan_destroy(gemm);
    pask_plan_destroy(pool);
    pask_free(ctx, x), pask_free(ctx, w), pask_free(ctx, b), pask_free(ctx, y), pask_free(ctx, py);
    free(zeros);
    pask_context_destroy(ctx);
    return 0;
}

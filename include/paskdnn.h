/*
 * paskdnn.h - the one public C header of paskdnn.
 *
 * paskdnn is a DNN primitive library (conv2d, gemm, pool2d) that routes every
 * call through a solver registry and a cache of resident kernels, so that the
 * first inference of a fresh process is nearly as fast as a warm one.
 *
 * Conventions
 *  - Every function returns a pask_status_t; PASK_SUCCESS is 0. Outputs go
 *    through pointer arguments. On failure nothing is written to any output
 *    (tensors included) and pask_last_error_message() describes what failed.
 *  - Handles are opaque; a const_ twin marks read-only use.
 *  - Ownership is stated in each function's comment. Handles are freed by the
 *    matching _destroy function; destroying NULL is a no-op.
 *  - The API grows by adding functions (`_v2`), never by changing signatures.
 *  - Contexts are thread safe: many threads may call ops, hints and queries on
 *    one context at once. Descriptors are immutable after creation. An options
 *    object must not be modified by two threads at once.
 *
 * Apache-2.0. This header is also the source of the Python binding's cffi cdef:
 * everything between PASK_CDEF_BEGIN and PASK_CDEF_END must stay plain C that
 * pycparser reads once `#` lines and the PASK_API macro are removed.
 */
#ifndef PASKDNN_H
#define PASKDNN_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define PASK_API __declspec(dllimport)
#elif defined(PASK_BUILDING_LIBRARY)
#define PASK_API __attribute__((visibility("default")))
#else
#define PASK_API
#endif

#define PASK_VERSION_MAJOR 0
#define PASK_VERSION_MINOR 1
#define PASK_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* PASK_CDEF_BEGIN */

/* Status codes. Numbers are stable; new codes are appended. */
typedef enum pask_status {
    PASK_SUCCESS = 0,
    PASK_ERROR_INVALID_ARGUMENT = 1,  /* a value out of range or inconsistent */
    PASK_ERROR_NULL_POINTER = 2,      /* a required pointer or handle was NULL */
    PASK_ERROR_SHAPE_MISMATCH = 3,    /* tensor shapes do not agree */
    PASK_ERROR_UNSUPPORTED = 4,       /* valid, but not supported (dtype, layout, device...) */
    PASK_ERROR_OVERFLOW = 5,          /* a size computation would overflow */
    PASK_ERROR_OUT_OF_MEMORY = 6,     /* an allocation failed */
    PASK_ERROR_BACKEND_UNAVAILABLE = 7, /* the device API or library could not be loaded */
    PASK_ERROR_LOAD_FAILED = 8,       /* a kernel code object could not be found or loaded */
    PASK_ERROR_INTERNAL = 9           /* a bug in paskdnn; please report it */
} pask_status_t;

typedef enum pask_dtype {
    PASK_DTYPE_FLOAT32 = 0,
    PASK_DTYPE_FLOAT16 = 1,
    PASK_DTYPE_BFLOAT16 = 2,
    PASK_DTYPE_FLOAT64 = 3
} pask_dtype_t;

/* Memory layout of a tensor. Dims are always given in logical order:
 * 4-D activations as {N, C, H, W}, 4-D conv weights as {O, I/groups, KH, KW},
 * whatever the layout. NCHW/NHWC apply to activations; for weights NCHW means
 * OIHW and NHWC means OHWI ("channels last"). ROW_MAJOR is a packed C-order
 * array of any rank (bias vectors, gemm matrices). */
typedef enum pask_layout {
    PASK_LAYOUT_ROW_MAJOR = 0,
    PASK_LAYOUT_NCHW = 1,
    PASK_LAYOUT_NHWC = 2
} pask_layout_t;

typedef enum pask_device_type {
    PASK_DEVICE_CPU = 0,
    PASK_DEVICE_CUDA = 1,
    PASK_DEVICE_HIP = 2
} pask_device_type_t;

typedef enum pask_activation {
    PASK_ACTIVATION_NONE = 0,
    PASK_ACTIVATION_RELU = 1,
    PASK_ACTIVATION_RELU6 = 2
} pask_activation_t;

typedef enum pask_pool_mode {
    PASK_POOL_MAX = 0,
    PASK_POOL_AVG = 1
} pask_pool_mode_t;

typedef enum pask_op {
    PASK_OP_CONV2D = 0,
    PASK_OP_GEMM = 1,
    PASK_OP_POOL2D = 2
} pask_op_t;

typedef struct pask_context *pask_context_t;
typedef const struct pask_context *const_pask_context_t;
typedef struct pask_plan *pask_plan_t;
typedef const struct pask_plan *const_pask_plan_t;
typedef struct pask_tensor_desc *pask_tensor_desc_t;
typedef const struct pask_tensor_desc *const_pask_tensor_desc_t;
typedef struct pask_options *pask_options_t;
typedef const struct pask_options *const_pask_options_t;

/* Fused epilogue applied to every output element:
 *     out = act(alpha * acc + beta * out_before + bias + residual)
 * acc is the raw convolution / matrix product. out_before is read only when
 * beta != 0 (so an uninitialised output is fine with beta == 0). bias and
 * residual are the optional tensors passed to the op. A NULL epilogue pointer
 * means alpha = 1, beta = 0, activation none. */
typedef struct pask_epilogue {
    float alpha;
    float beta;
    pask_activation_t activation;
} pask_epilogue_t;

/* conv2d parameters, index 0 = height, 1 = width. Padding may be asymmetric:
 * pad_pre is top/left, pad_post bottom/right. */
typedef struct pask_conv2d_params {
    int64_t stride[2];
    int64_t pad_pre[2];
    int64_t pad_post[2];
    int64_t dilation[2];
    int64_t groups;
} pask_conv2d_params_t;

/* pool2d parameters, index 0 = height, 1 = width. Output size follows
 * PyTorch: floor (or ceil with ceil_mode) of
 * (in + pad_pre + pad_post - dilation*(kernel-1) - 1) / stride + 1, and with
 * ceil_mode a window that would start in the post padding is dropped.
 * dilation applies to max pooling only (must be 1 for average).
 * count_include_pad and divisor_override apply to average pooling;
 * divisor_override 0 means none. */
typedef struct pask_pool2d_params {
    pask_pool_mode_t mode;
    int64_t kernel[2];
    int64_t stride[2];
    int64_t pad_pre[2];
    int64_t pad_post[2];
    int64_t dilation[2];
    int32_t ceil_mode;
    int32_t count_include_pad;
    int64_t divisor_override;
} pask_pool2d_params_t;

/* ---- status, errors, version ------------------------------------------ */

/* A static, never-NULL name for a status code ("PASK_ERROR_SHAPE_MISMATCH"). */
PASK_API const char *pask_status_string(pask_status_t status);

/* The message of the calling thread's most recent paskdnn call if it failed,
 * "" if it succeeded. The pointer stays valid until that thread's next call. */
PASK_API const char *pask_last_error_message(void);

/* The library version as "MAJOR.MINOR.PATCH" (static string). */
PASK_API const char *pask_version_string(void);

/* ---- options (context configuration) ------------------------------------ */

/* Creates an empty option set. The caller owns *options and frees it with
 * pask_options_destroy. */
PASK_API pask_status_t pask_options_create(pask_options_t *options);

/* Frees an option set. NULL is a no-op. */
PASK_API pask_status_t pask_options_destroy(pask_options_t options);

/* Sets key to value (both copied). Known keys:
 *   "policy"      reactive | proactive | reuse | pask   (default pask; see below)
 *   "loader_threads" background loader threads, 0..64 (default 2; 4 for GPU
 *                 contexts on hosts with 8 or more cores)
 *   "lookahead"   hint window: how many upcoming hints are loaded ahead (default 64)
 *   "resident_capacity" kernels kept resident, LRU (default 256; 0 = none)
 *   "hints_file"  a JSON hints record to preload from (default $PASKDNN_HINTS)
 *   "trace"       1 (default) records the event log, 0 does not
 *   "debug_load_delay_ms" sleep added to every kernel load (testing only)
 *   "num_threads" worker threads for CPU kernels, >= 1 (default: all cores)
 *   "kernel_dir"  folder of prebuilt kernel code objects (default: the one
 *                 installed beside libpaskdnn)
 *   "cache_dir"   user cache folder (default $PASKDNN_CACHE_DIR, else
 *                 $XDG_CACHE_HOME/paskdnn, else ~/.cache/paskdnn): measured
 *                 load costs (load_costs.json); never host code
 *   "cpu_isa"     avx512 | avx2 | generic: pin the CPU kernel variant
 *   "nvrtc_library" path of libnvrtc (default $PASKDNN_NVRTC, else the usual
 *                 sonames); without NVRTC the CUDA backend uses prebuilt cubins only
 *   "cudnn"       1 | 0: use cuDNN's kernels on CUDA contexts (default 1)
 *   "cudnn_library" path of libcudnn.so.9 (default $PASKDNN_CUDNN, else the
 *                 usual sonames); without cuDNN its solvers are not candidates
 *   "explore"     1 | 0: GPU contexts with a reusing policy try, once each, the
 *                 candidates within 2x of the fastest measured one (default 0;
 *                 not yet measured on a GPU)
 *   "solvers"     comma-separated solver names the context may use
 *                 (default: all); e.g. "conv2d.direct,gemm.small"
 * Unknown keys and bad values are reported by pask_context_create. */
PASK_API pask_status_t pask_options_set(pask_options_t options, const char *key,
                                        const char *value);

/* ---- contexts ------------------------------------------------------------ */

/* Creates a context on a device. options may be NULL (all defaults) and is
 * not retained. The caller owns *context and frees it with
 * pask_context_destroy. device_index counts devices of that type from 0. */
PASK_API pask_status_t pask_context_create(pask_context_t *context,
                                           pask_device_type_t device_type,
                                           int device_index,
                                           const_pask_options_t options);

/* Closes a context: refuses new calls (they return
 * PASK_ERROR_INVALID_ARGUMENT, "the context has been closed"), waits for the
 * calls in flight on other threads to return, then joins the loader threads,
 * saves the measured load costs and releases the resident kernels, the vendor
 * libraries' handles and the device, including memory from pask_malloc. The
 * handle stays valid until pask_context_destroy; closing twice is a no-op.
 * In a child of fork() a context inherited from the parent refuses every call
 * and its close does nothing (its threads do not exist in the child). */
PASK_API pask_status_t pask_context_close(pask_context_t context);

/* Closes the context (see pask_context_close) and frees the handle. No call
 * may use the handle once this begins: to stop a context that other threads
 * may still be calling, pask_context_close it first. NULL is a no-op. A
 * context inherited through fork() is not freed in the child. */
PASK_API pask_status_t pask_context_destroy(pask_context_t context);

/* Worker thread count of a CPU context (1 = the caller only). */
PASK_API pask_status_t pask_context_get_num_threads(const_pask_context_t context,
                                                    int *num_threads);

/* ---- tensor descriptors --------------------------------------------------- */

/* Creates a descriptor of a packed tensor. dims has ndim entries (1..8), each
 * >= 1, in logical order (see pask_layout_t; NCHW/NHWC need ndim == 4). The
 * dims are copied. The caller owns *desc and frees it with
 * pask_tensor_desc_destroy. */
PASK_API pask_status_t pask_tensor_desc_create(pask_tensor_desc_t *desc,
                                               pask_dtype_t dtype,
                                               pask_layout_t layout, int ndim,
                                               const int64_t *dims);

/* Frees a descriptor. NULL is a no-op. */
PASK_API pask_status_t pask_tensor_desc_destroy(pask_tensor_desc_t desc);

/* Reads a descriptor back. dims must hold 8 entries; any output pointer may
 * be NULL. */
PASK_API pask_status_t pask_tensor_desc_get(const_pask_tensor_desc_t desc,
                                            pask_dtype_t *dtype,
                                            pask_layout_t *layout, int *ndim,
                                            int64_t *dims);

/* Size in bytes of the described tensor. */
PASK_API pask_status_t pask_tensor_desc_get_size(const_pask_tensor_desc_t desc,
                                                 size_t *bytes);

/* ---- conv2d --------------------------------------------------------------- */

/* Output dims {N, O, OH, OW} of a convolution (logical order). */
PASK_API pask_status_t pask_conv2d_output_dims(const pask_conv2d_params_t *params,
                                               const_pask_tensor_desc_t x_desc,
                                               const_pask_tensor_desc_t w_desc,
                                               int64_t *out_dims);

/* 2-D convolution (cross-correlation, like PyTorch) with a fused epilogue:
 *   y = act(alpha * conv(x, w) + beta * y + bias + residual)
 * x: {N, C, H, W} NCHW or NHWC. w: {O, C/groups, KH, KW}, layout NCHW (OIHW)
 * or NHWC (OHWI). bias: {O} ROW_MAJOR or NULL (both desc and pointer).
 * residual: same dims and layout as y, or NULL. y: {N, O, OH, OW}, same
 * layout as x. y must not overlap x, w, bias or residual. epilogue may be
 * NULL. No pointer is retained after the call returns. */
PASK_API pask_status_t pask_conv2d_forward(pask_context_t context,
                                           const pask_conv2d_params_t *params,
                                           const pask_epilogue_t *epilogue,
                                           const_pask_tensor_desc_t x_desc, const void *x,
                                           const_pask_tensor_desc_t w_desc, const void *w,
                                           const_pask_tensor_desc_t bias_desc, const void *bias,
                                           const_pask_tensor_desc_t residual_desc, const void *residual,
                                           const_pask_tensor_desc_t y_desc, void *y);

/* ---- gemm ----------------------------------------------------------------- */

/* Row-major matrix product with a fused epilogue:
 *   C = act(alpha * op(A) @ op(B) + beta * C + bias)
 * op(A) is M x K (A is M x K, or K x M when trans_a != 0), op(B) is K x N.
 * lda/ldb/ldc are row strides in elements (>= the row length). bias is a
 * length-N vector (added to every row) or NULL. C must not overlap A, B or
 * bias. This is also `linear`: y = x @ W^T + b is gemm(trans_b = 1).
 * No pointer is retained after the call returns. */
PASK_API pask_status_t pask_gemm(pask_context_t context, pask_dtype_t dtype,
                                 int trans_a, int trans_b,
                                 int64_t m, int64_t n, int64_t k,
                                 const pask_epilogue_t *epilogue,
                                 const void *a, int64_t lda,
                                 const void *b, int64_t ldb,
                                 const void *bias,
                                 void *c, int64_t ldc);

/* ---- pool2d --------------------------------------------------------------- */

/* Output dims {N, C, OH, OW} of a pooling (logical order). */
PASK_API pask_status_t pask_pool2d_output_dims(const pask_pool2d_params_t *params,
                                               const_pask_tensor_desc_t x_desc,
                                               int64_t *out_dims);

/* Max or average pooling. x: {N, C, H, W} NCHW or NHWC; y: {N, C, OH, OW}
 * in the same layout and dtype. Global average pooling is average pooling
 * with kernel = {H, W}. y must not overlap x. */
PASK_API pask_status_t pask_pool2d_forward(pask_context_t context,
                                           const pask_pool2d_params_t *params,
                                           const_pask_tensor_desc_t x_desc, const void *x,
                                           const_pask_tensor_desc_t y_desc, void *y);

/* ---- prepared calls ----------------------------------------------------------
 * A plan is one op's descriptors and parameters, validated, hashed and filed
 * under its Bucket once, then executed many times with data pointers and a
 * stream: an engine's layer. Creating a plan checks everything the eager call
 * checks except the pointers; executing checks the pointers (present where the
 * plan needs them, the output overlapping no input) and dispatches like the
 * eager call (resident kernel, reuse, load). Descriptors are not retained.
 * A plan belongs to its context: destroy plans before the context; executing
 * a plan of a closed context returns PASK_ERROR_INVALID_ARGUMENT. Plans are
 * immutable and may be executed from many threads at once. */

/* Data pointers of one execution. conv2d: x, w, bias (iff planned with a
 * bias_desc), residual (iff planned with a residual_desc), y. gemm: x = A,
 * w = B, bias (iff planned with has_bias), y = C. pool2d: x, y. Fields the op
 * does not use are ignored. */
typedef struct pask_plan_args {
    const void *x;
    const void *w;
    const void *bias;
    const void *residual;
    void *y;
} pask_plan_args_t;

/* The plan of pask_conv2d_forward with these descriptors (see there). */
PASK_API pask_status_t pask_plan_create_conv2d(pask_plan_t *plan, pask_context_t context,
                                               const pask_conv2d_params_t *params,
                                               const pask_epilogue_t *epilogue,
                                               const_pask_tensor_desc_t x_desc,
                                               const_pask_tensor_desc_t w_desc,
                                               const_pask_tensor_desc_t bias_desc,
                                               const_pask_tensor_desc_t residual_desc,
                                               const_pask_tensor_desc_t y_desc);

/* The plan of pask_gemm with these sizes (see there); has_bias: whether
 * executions pass a bias. */
PASK_API pask_status_t pask_plan_create_gemm(pask_plan_t *plan, pask_context_t context, pask_dtype_t dtype,
                                             int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                                             const pask_epilogue_t *epilogue, int64_t lda, int64_t ldb,
                                             int64_t ldc, int has_bias);

/* The plan of pask_pool2d_forward with these descriptors (see there). */
PASK_API pask_status_t pask_plan_create_pool2d(pask_plan_t *plan, pask_context_t context,
                                               const pask_pool2d_params_t *params,
                                               const_pask_tensor_desc_t x_desc,
                                               const_pask_tensor_desc_t y_desc);

/* Runs the plan on args' pointers. stream: the CUstream / hipStream_t to run
 * on for this execution (NULL: the calling thread's stream from
 * pask_set_stream, else the default stream); the CPU device only accepts NULL.
 * Asynchronous on GPU devices, like the eager calls. */
PASK_API pask_status_t pask_plan_execute(const_pask_plan_t plan, const pask_plan_args_t *args, void *stream);

/* Hints the plan's Problem to its context (as pask_hint_conv2d etc.). */
PASK_API pask_status_t pask_plan_hint(const_pask_plan_t plan);

/* The plan's op. */
PASK_API pask_status_t pask_plan_get_op(const_pask_plan_t plan, pask_op_t *op);

/* Frees a plan. NULL is a no-op. */
PASK_API pask_status_t pask_plan_destroy(pask_plan_t plan);

/* ---- memory and streams ---------------------------------------------------- */

typedef enum pask_copy_kind {
    PASK_COPY_HOST_TO_DEVICE = 0,
    PASK_COPY_DEVICE_TO_HOST = 1,
    PASK_COPY_DEVICE_TO_DEVICE = 2
} pask_copy_kind_t;

/* Number of devices of a type (0 when its driver is missing). */
PASK_API pask_status_t pask_device_count(pask_device_type_t device_type, int *count);

/* Allocates bytes of the context's device memory (host memory on the CPU).
 * The caller owns *ptr and frees it with pask_free on the same context. */
PASK_API pask_status_t pask_malloc(pask_context_t context, size_t bytes, void **ptr);

/* Frees memory from pask_malloc. NULL is a no-op. */
PASK_API pask_status_t pask_free(pask_context_t context, void *ptr);

/* Copies bytes; waits for the calling thread's stream first and returns when
 * the copy is done. */
PASK_API pask_status_t pask_memcpy(pask_context_t context, void *dst, const void *src, size_t bytes,
                                   pask_copy_kind_t kind);

/* Sets the stream (a CUstream / cudaStream_t; NULL = the default stream) that
 * the calling thread's ops on this context run on. Kept for compatibility:
 * pask_plan_execute takes the stream as an argument. Ops are asynchronous with
 * respect to the host on GPU devices. The CPU device only accepts NULL. */
PASK_API pask_status_t pask_set_stream(pask_context_t context, void *stream);

/* Waits until the calling thread's stream has finished its work. */
PASK_API pask_status_t pask_synchronize(pask_context_t context);

/* Pays the calling thread's one-time set-up in the vendor libraries now (call
 * it at model load on the thread that will run inference): cuDNN's first
 * execution on a thread costs about 0.15 ms of host time on an H100, per
 * thread, whatever the plan. It runs one tiny convolution on the calling
 * thread's stream if the context's library set-up (a loader thread's first
 * task) is done; it never waits for it. *primed (may be NULL): 1 if a library
 * was primed, 0 where there is nothing to prime (CPU contexts, no cuDNN, the
 * reactive policy, no loader threads) or its set-up is not done yet. */
PASK_API pask_status_t pask_prime_thread(pask_context_t context, int *primed);

/* ---- solver registry ------------------------------------------------------ */

/* Number of solvers in the registry (all devices). */
PASK_API pask_status_t pask_solver_count(int *count);

/* Describes solver number index (0 <= index < count): its stable numeric id,
 * its name ("conv2d.im2col_gemm"), its op and its device type. Strings are
 * static. Any output pointer may be NULL. */
PASK_API pask_status_t pask_solver_info(int index, int *id, const char **name,
                                        pask_op_t *op,
                                        pask_device_type_t *device_type);

/* Name of the solver that ran the calling thread's last successful op, or ""
 * if none. Static string. */
PASK_API const char *pask_last_solver(void);

/* What the context's policy did for the calling thread's last successful op:
 * "resident" (its best kernel was resident), "reuse" (another resident kernel
 * served while the best one loads), "waited" (it waited for a load already in
 * flight), "load" (it loaded a kernel on the calling thread), or "" if none.
 * Static string; one per-thread read, cheaper than comparing stats. */
PASK_API const char *pask_last_decision(void);

/* ---- the PaSK machinery: policy, resident set, hints, stats, trace ---------
 *
 * Policies (option "policy"):
 *   reactive   run the best solver; load its kernel on demand, blocking
 *              (the baseline cuDNN and MIOpen follow). Hints are ignored.
 *   proactive  loader threads load hinted Problems' best kernels ahead of need;
 *              a call waits for its best kernel (in flight or loaded now).
 *   reuse      no preloading; a call whose best kernel is not resident runs on
 *              the best resident applicable kernel and queues the best.
 *   pask       both (default): run the best if resident; wait for it if it is
 *              in flight and lands sooner than the estimated cost gap; else run
 *              the best resident applicable kernel and queue the best; else load
 *              the applicable kernel that gives a result soonest (load + run).
 */

/* Per-context counters. Times in milliseconds. */
typedef struct pask_stats {
    int64_t calls;            /* ops run */
    int64_t resident_hits;    /* calls whose best kernel was resident */
    int64_t reuses;           /* calls run on another resident applicable kernel */
    int64_t inflight_waits;   /* calls that waited for a load already in flight */
    int64_t blocking_loads;   /* calls that loaded a kernel on their own thread */
    double blocking_wait_ms;  /* total time calls spent blocked on loads and waits */
    int64_t loads;            /* kernels brought to resident, on any thread */
    double load_ms;           /* total time of those loads */
    int64_t compiles;         /* code objects compiled (0 on the CPU: all prebuilt) */
    double compile_ms;
    int64_t load_failures;    /* failed loads; the kernel is then marked bad */
    int64_t prefetches;       /* loads requested from hints */
    int64_t hints;            /* hints received (calls, replay file) */
    int64_t hints_matched;    /* calls that matched a hint in the window */
    int64_t hints_dropped;    /* hints passed over by the window */
    int64_t evictions;        /* kernels evicted from the resident set */
    int64_t resident;         /* kernels resident now */
    int64_t cache_hits;       /* code objects found in the user cache (GPU) */
    int64_t cache_rejects;    /* damaged or foreign user-cache entries, treated as misses */
} pask_stats_t;

/* Reads the context's counters into *stats. */
PASK_API pask_status_t pask_context_get_stats(const_pask_context_t context, pask_stats_t *stats);

/* The context's policy name (static string). */
PASK_API pask_status_t pask_context_get_policy(const_pask_context_t context, const char **policy);

/* Bounds the resident set to capacity kernels (LRU eviction); 0 keeps nothing
 * resident beyond the call that loaded it. */
PASK_API pask_status_t pask_context_set_resident_capacity(pask_context_t context, int64_t capacity);

/* Blocks until no load is queued or running, or timeout_ms passes (>= 0).
 * *idle (may be NULL) tells which. */
PASK_API pask_status_t pask_context_wait_loads(pask_context_t context, int64_t timeout_ms, int *idle);

/* Writes the event log as Chrome/Perfetto trace JSON (atomically): one row per
 * thread, the callers' op calls and each loader thread's loads. */
PASK_API pask_status_t pask_context_export_trace(const_pask_context_t context, const char *path);

/* Saves the distinct Problems this context ran, in first-seen order, as a JSON
 * hints record. A context created with option "hints_file" (or with
 * $PASKDNN_HINTS set) takes them as hints. */
PASK_API pask_status_t pask_context_save_record(const_pask_context_t context, const char *path);

/* Hints: the Problems the engine will run next, in execution order, described
 * like the calls themselves (no data pointers). The loader threads bring their
 * best kernels in, in order of need, within the lookahead window (option
 * "lookahead"); a call that matches a hint advances the window past it. */
PASK_API pask_status_t pask_hint_conv2d(pask_context_t context, const pask_conv2d_params_t *params,
                                        const pask_epilogue_t *epilogue,
                                        const_pask_tensor_desc_t x_desc, const_pask_tensor_desc_t w_desc,
                                        const_pask_tensor_desc_t bias_desc,
                                        const_pask_tensor_desc_t residual_desc);

PASK_API pask_status_t pask_hint_gemm(pask_context_t context, pask_dtype_t dtype, int trans_a, int trans_b,
                                      int64_t m, int64_t n, int64_t k, const pask_epilogue_t *epilogue,
                                      int64_t lda, int64_t ldb, int64_t ldc, int has_bias);

PASK_API pask_status_t pask_hint_pool2d(pask_context_t context, const pask_pool2d_params_t *params,
                                        const_pask_tensor_desc_t x_desc);

/* Drops every pending hint. */
PASK_API pask_status_t pask_hint_clear(pask_context_t context);

/* PASK_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* PASKDNN_H */

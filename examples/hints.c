/* hints.c - a tiny "engine" that tells paskdnn which layers come next,
 * waits for the loader threads, runs the layers and prints the counters.
 *
 *   export PKG_CONFIG_PATH=$(python3 -m paskdnn config --pkgconfig-dir)
 *   cc -std=c11 -Wall hints.c -o hints $(pkg-config --cflags --libs paskdnn)
 *   ./hints
 */
#include <stdio.h>
#include <stdlib.h>

#include <paskdnn.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        pask_status_t s_ = (call);                                               \
        if (s_ != PASK_SUCCESS) {                                                \
            fprintf(stderr, "%s failed: %s: %s\n", #call, pask_status_string(s_), \
                    pask_last_error_message());                                  \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

int main(void) {
    /* 1. a context with explicit options (all optional) */
    pask_options_t opts;
    CHECK(pask_options_create(&opts));
    CHECK(pask_options_set(opts, "policy", "pask"));
    CHECK(pask_options_set(opts, "loader_threads", "2"));
    pask_context_t ctx;
    CHECK(pask_context_create(&ctx, PASK_DEVICE_CPU, 0, opts));
    CHECK(pask_options_destroy(opts)); /* not retained by the context */

    /* 2. descriptors: x {1,64,56,56} NCHW, w {64,64,3,3} OIHW, bias {64} */
    int64_t x_dims[4] = {1, 64, 56, 56}, w_dims[4] = {64, 64, 3, 3}, b_dims[1] = {64};
    int64_t w1_dims[4] = {128, 64, 1, 1}, y_dims[4], z_dims[4];
    pask_tensor_desc_t xd, wd, bd, w1d, yd, zd;
    CHECK(pask_tensor_desc_create(&xd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, x_dims));
    CHECK(pask_tensor_desc_create(&wd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, w_dims));
    CHECK(pask_tensor_desc_create(&bd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_ROW_MAJOR, 1, b_dims));
    CHECK(pask_tensor_desc_create(&w1d, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, w1_dims));

    /* stride, pad_pre, pad_post, dilation, groups (index 0 = height, 1 = width) */
    pask_conv2d_params_t conv3 = {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1};
    pask_conv2d_params_t conv1 = {{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
    pask_epilogue_t relu = {.alpha = 1.0f, .activation = PASK_ACTIVATION_RELU};
    CHECK(pask_conv2d_output_dims(&conv3, xd, wd, y_dims));
    CHECK(pask_tensor_desc_create(&yd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, y_dims));
    CHECK(pask_conv2d_output_dims(&conv1, yd, w1d, z_dims));
    CHECK(pask_tensor_desc_create(&zd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, z_dims));

    /* 3. hints: the two layers, in execution order, described like the calls */
    CHECK(pask_hint_conv2d(ctx, &conv3, &relu, xd, wd, bd, NULL));
    CHECK(pask_hint_conv2d(ctx, &conv1, NULL, yd, w1d, NULL, NULL));

    /* 4. an engine would do other start-up work here; we just wait */
    int idle = 0;
    CHECK(pask_context_wait_loads(ctx, 10000, &idle));

    /* 5. run the layers */
    size_t xs, ws, bs, w1s, ys, zs;
    CHECK(pask_tensor_desc_get_size(xd, &xs));
    CHECK(pask_tensor_desc_get_size(wd, &ws));
    CHECK(pask_tensor_desc_get_size(bd, &bs));
    CHECK(pask_tensor_desc_get_size(w1d, &w1s));
    CHECK(pask_tensor_desc_get_size(yd, &ys));
    CHECK(pask_tensor_desc_get_size(zd, &zs));
    float *x = malloc(xs), *w = malloc(ws), *b = malloc(bs), *w1 = malloc(w1s), *y = malloc(ys), *z = malloc(zs);
    if (!x || !w || !b || !w1 || !y || !z) return 1;
    for (size_t i = 0; i < xs / 4; ++i) x[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < ws / 4; ++i) w[i] = (float)(i % 5) * 0.01f - 0.02f;
    for (size_t i = 0; i < bs / 4; ++i) b[i] = 0.1f;
    for (size_t i = 0; i < w1s / 4; ++i) w1[i] = (float)(i % 3) * 0.01f;

    CHECK(pask_conv2d_forward(ctx, &conv3, &relu, xd, x, wd, w, bd, b, NULL, NULL, yd, y));
    printf("layer 1: %s\n", pask_last_solver());
    CHECK(pask_conv2d_forward(ctx, &conv1, NULL, yd, y, w1d, w1, NULL, NULL, NULL, NULL, zd, z));
    printf("layer 2: %s\n", pask_last_solver());

    /* 6. what happened */
    pask_stats_t st;
    const char *policy;
    CHECK(pask_context_get_stats(ctx, &st));
    CHECK(pask_context_get_policy(ctx, &policy));
    printf("policy %s, loader idle %d\n", policy, idle);
    printf("calls %lld, resident_hits %lld, blocking_loads %lld, prefetches %lld, hints_matched %lld/%lld\n",
           (long long)st.calls, (long long)st.resident_hits, (long long)st.blocking_loads,
           (long long)st.prefetches, (long long)st.hints_matched, (long long)st.hints);

    free(x); free(w); free(b); free(w1); free(y); free(z);
    pask_tensor_desc_destroy(xd); pask_tensor_desc_destroy(wd); pask_tensor_desc_destroy(bd);
    pask_tensor_desc_destroy(w1d); pask_tensor_desc_destroy(yd); pask_tensor_desc_destroy(zd);
    pask_context_destroy(ctx);
    return 0;
}

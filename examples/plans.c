/* plans.c - prepared calls: an engine's layer validated once, run many times.
 *
 * One 3x3 conv (bias + ReLU) is planned once; the plan is hinted, then executed
 * on three different inputs, each checked against a float64 loop here.
 *
 *   export PKG_CONFIG_PATH=$(python3 -m paskdnn config --pkgconfig-dir)
 *   cc -std=c11 -Wall plans.c -o plans $(pkg-config --cflags --libs paskdnn) -lm
 *   ./plans
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <paskdnn.h>

#define N 1
#define C 4
#define H 10
#define W 10
#define O 8
#define K 3

static int ok(pask_status_t s, const char *what) {
    if (s == PASK_SUCCESS) return 1;
    fprintf(stderr, "%s: %s: %s\n", what, pask_status_string(s), pask_last_error_message());
    return 0;
}

int main(void) {
    static float x[N * C * H * W], w[O * C * K * K], b[O], y[N * O * H * W];
    srand(1);
    for (int i = 0; i < O * C * K * K; ++i) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < O; ++i) b[i] = (float)rand() / RAND_MAX - 0.5f;

    pask_context_t ctx = NULL;
    if (!ok(pask_context_create(&ctx, PASK_DEVICE_CPU, 0, NULL), "context")) return 1;
    int64_t xdims[4] = {N, C, H, W}, wdims[4] = {O, C, K, K}, bdims[1] = {O}, ydims[4] = {N, O, H, W};
    pask_tensor_desc_t xd, wd, bd, yd;
    pask_tensor_desc_create(&xd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, xdims);
    pask_tensor_desc_create(&wd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, wdims);
    pask_tensor_desc_create(&bd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_ROW_MAJOR, 1, bdims);
    pask_tensor_desc_create(&yd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, ydims);
    pask_conv2d_params_t params = {{1, 1}, {1, 1}, {1, 1}, {1, 1}, 1}; /* stride, pad, pad, dilation, groups */
    pask_epilogue_t ep = {.alpha = 1.0f, .activation = PASK_ACTIVATION_RELU};

    /* At model load: plan the layer (everything but the pointers is checked
     * here), then hint it so a loader thread brings its kernel in. */
    pask_plan_t conv = NULL;
    if (!ok(pask_plan_create_conv2d(&conv, ctx, &params, &ep, xd, wd, bd, NULL, yd), "plan")) return 1;
    pask_tensor_desc_destroy(xd); /* a plan keeps no descriptor */
    pask_tensor_desc_destroy(wd);
    pask_tensor_desc_destroy(bd);
    pask_tensor_desc_destroy(yd);
    if (!ok(pask_plan_hint(conv), "hint")) return 1;

    double worst = 0;
    for (int run = 0; run < 3; ++run) {
        for (int i = 0; i < N * C * H * W; ++i) x[i] = (float)rand() / RAND_MAX - 0.5f;
        pask_plan_args_t args = {.x = x, .w = w, .bias = b, .y = y};
        if (!ok(pask_plan_execute(conv, &args, NULL), "execute")) return 1; /* NULL stream: the CPU */
        for (int o = 0; o < O; ++o)
            for (int i = 0; i < H; ++i)
                for (int j = 0; j < W; ++j) {
                    double acc = b[o];
                    for (int c = 0; c < C; ++c)
                        for (int r = 0; r < K; ++r)
                            for (int s = 0; s < K; ++s) {
                                int ih = i - 1 + r, iw = j - 1 + s;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    acc += (double)x[(c * H + ih) * W + iw] * w[((o * C + c) * K + r) * K + s];
                            }
                    acc = acc > 0 ? acc : 0;
                    double err = fabs(acc - y[(o * H + i) * W + j]);
                    if (err > worst) worst = err;
                }
    }
    pask_stats_t st;
    pask_context_get_stats(ctx, &st);
    printf("3 executions of one plan: max error %.1e, %lld calls, %lld hints matched, solver %s\n", worst,
           (long long)st.calls, (long long)st.hints_matched, pask_last_solver());
    pask_plan_destroy(conv); /* plans before their context */
    pask_context_destroy(ctx);
    return worst < 1e-4 ? 0 : 1;
}

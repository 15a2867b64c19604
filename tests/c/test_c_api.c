/* A C program that includes paskdnn.h, links through pkg-config and checks a
 * convolution against a float64 loop written here, plus a few status paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <paskdnn.h>

#define CHECK(call)                                                                      \
    do {                                                                                 \
        pask_status_t s_ = (call);                                                       \
        if (s_ != PASK_SUCCESS) {                                                        \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,          \
                    pask_status_string(s_), pask_last_error_message());                  \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

#define EXPECT(cond)                                                                     \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);          \
            return 1;                                                                    \
        }                                                                                \
    } while (0)

static unsigned rng_state = 12345u;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

int main(void) {
    enum { N = 2, C = 3, H = 9, W = 8, O = 5, K = 3, S = 2, P = 1 };
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    static float x[N * C * H * W], w[O * C * K * K], b[O], y[N * O * 5 * 4];
    for (size_t i = 0; i < sizeof x / sizeof *x; ++i) x[i] = frand();
    for (size_t i = 0; i < sizeof w / sizeof *w; ++i) w[i] = frand();
    for (size_t i = 0; i < sizeof b / sizeof *b; ++i) b[i] = frand();

    pask_context_t ctx = NULL;
    CHECK(pask_context_create(&ctx, PASK_DEVICE_CPU, 0, NULL));

    int64_t xd_dims[4] = {N, C, H, W}, wd_dims[4] = {O, C, K, K}, bd_dims[1] = {O};
    pask_tensor_desc_t xd, wd, bd, yd;
    CHECK(pask_tensor_desc_create(&xd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, xd_dims));
    CHECK(pask_tensor_desc_create(&wd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, wd_dims));
    CHECK(pask_tensor_desc_create(&bd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_ROW_MAJOR, 1, bd_dims));
    pask_conv2d_params_t params = {{S, S}, {P, P}, {P, P}, {1, 1}, 1};
    int64_t out_dims[4];
    CHECK(pask_conv2d_output_dims(&params, xd, wd, out_dims));
    EXPECT(out_dims[0] == N && out_dims[1] == O && out_dims[2] == OH && out_dims[3] == OW);
    CHECK(pask_tensor_desc_create(&yd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, out_dims));
    pask_epilogue_t ep = {.alpha = 1.0f, .activation = PASK_ACTIVATION_RELU};
    CHECK(pask_conv2d_forward(ctx, &params, &ep, xd, x, wd, w, bd, b, NULL, NULL, yd, y));

    double worst = 0;
    for (int n = 0; n < N; ++n)
        for (int o = 0; o < O; ++o)
            for (int oh = 0; oh < OH; ++oh)
                for (int ow = 0; ow < OW; ++ow) {
                    double acc = b[o];
                    for (int c = 0; c < C; ++c)
                        for (int r = 0; r < K; ++r)
                            for (int s = 0; s < K; ++s) {
                                int ih = oh * S - P + r, iw = ow * S - P + s;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)x[((n * C + c) * H + ih) * W + iw] *
                                       (double)w[((o * C + c) * K + r) * K + s];
                            }
                    if (acc < 0) acc = 0;
                    double err = fabs(acc - y[((n * O + o) * OH + oh) * OW + ow]);
                    if (err > worst) worst = err;
                }
    EXPECT(worst < 1e-4);
    EXPECT(strncmp(pask_last_solver(), "conv2d.", 7) == 0);

    /* errors: a status, a message, and the output untouched */
    float before = y[0];
    pask_conv2d_params_t bad = params;
    bad.stride[0] = 0;
    EXPECT(pask_conv2d_forward(ctx, &bad, NULL, xd, x, wd, w, NULL, NULL, NULL, NULL, yd, y) ==
           PASK_ERROR_INVALID_ARGUMENT);
    EXPECT(strlen(pask_last_error_message()) > 0);
    EXPECT(y[0] == before);
    EXPECT(pask_conv2d_forward(NULL, &params, NULL, xd, x, wd, w, NULL, NULL, NULL, NULL, yd, y) ==
           PASK_ERROR_NULL_POINTER);
    int64_t huge[4] = {INT64_MAX / 2, 4, 4, 4};
    pask_tensor_desc_t hd = NULL;
    EXPECT(pask_tensor_desc_create(&hd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, huge) == PASK_ERROR_OVERFLOW);
    EXPECT(hd == NULL);
    EXPECT(strcmp(pask_status_string(PASK_ERROR_SHAPE_MISMATCH), "PASK_ERROR_SHAPE_MISMATCH") == 0);

    int count = 0;
    CHECK(pask_solver_count(&count));
    EXPECT(count >= 8);

    /* prepared calls: a plan made once gives the eager call's result on new
     * buffers, every time; its pointers are checked per execution */
    {
        static float y2[N * O * 5 * 4], x2[N * C * H * W];
        for (size_t i = 0; i < sizeof x2 / sizeof *x2; ++i) x2[i] = frand();
        pask_plan_t plan = NULL;
        CHECK(pask_plan_create_conv2d(&plan, ctx, &params, &ep, xd, wd, bd, NULL, yd));
        pask_op_t op;
        CHECK(pask_plan_get_op(plan, &op));
        EXPECT(op == PASK_OP_CONV2D);
        /* the plan's Problem as fields, and the CUDA kernels that could run it (no device needed) */
        const int64_t *fields = NULL;
        int64_t nfields = 0;
        CHECK(pask_plan_get_fields(plan, &fields, &nfields));
        EXPECT(nfields == 30 && fields[0] == PASK_OP_CONV2D && fields[6] == N && fields[7] == C);
        const char *report = NULL;
        CHECK(pask_kernel_candidates(PASK_DEVICE_CUDA, "sm_90", fields, nfields, &report));
        EXPECT(strstr(report, "\"solver\": \"conv2d.cuda_igemm\"") != NULL);
        EXPECT(strstr(report, "native/cuda/conv_igemm[dtype=0]@sm_90") != NULL);
        EXPECT(pask_kernel_candidates(PASK_DEVICE_CPU, "sm_90", fields, nfields, &report) ==
               PASK_ERROR_INVALID_ARGUMENT);
        const char *source = NULL;
        CHECK(pask_kernel_source(PASK_DEVICE_CUDA, "conv_igemm", &source));
        EXPECT(strstr(source, "pask_conv2d_igemm") != NULL);
        /* a CPU context takes no code objects, after the arguments are checked */
        static const unsigned char elf[8] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0};
        EXPECT(pask_context_add_code_object(ctx, "native/cuda/gemm[dtype=0]@sm_90", elf, sizeof elf,
                                            "0000000000000000000000000000000000000000000000000000000000000000") ==
               PASK_ERROR_INVALID_ARGUMENT);
        EXPECT(pask_context_add_code_object(ctx, "native/cuda/gemm[dtype=0]@sm_90", elf, sizeof elf, NULL) ==
               PASK_ERROR_NULL_POINTER);
        for (int rep = 0; rep < 3; ++rep) {
            pask_plan_args_t a = {.x = rep % 2 ? x2 : x, .w = w, .bias = b, .y = y2};
            CHECK(pask_plan_execute(plan, &a, NULL));
            CHECK(pask_conv2d_forward(ctx, &params, &ep, xd, rep % 2 ? x2 : x, wd, w, bd, b, NULL, NULL, yd, y));
            /* the same values up to summation order: the plan and the eager call may
             * run different solvers (a stand-in while the best loads, a timed trial) */
            double diff = 0;
            for (size_t i = 0; i < sizeof y2 / sizeof *y2; ++i) {
                const double d = fabs((double)y[i] - (double)y2[i]) / (1.0 + fabs((double)y[i]));
                if (d > diff) diff = d;
            }
            EXPECT(diff < 1e-5);
        }
        float keep = y2[0];
        pask_plan_args_t no_bias = {.x = x, .w = w, .y = y2};
        EXPECT(pask_plan_execute(plan, &no_bias, NULL) == PASK_ERROR_NULL_POINTER);
        pask_plan_args_t in_place = {.x = x, .w = w, .bias = b, .y = (void *)x};
        EXPECT(pask_plan_execute(plan, &in_place, NULL) == PASK_ERROR_INVALID_ARGUMENT);
        int on_cpu_stream = 0;
        pask_plan_args_t ok = {.x = x, .w = w, .bias = b, .y = y2};
        EXPECT(pask_plan_execute(plan, &ok, &on_cpu_stream) != PASK_SUCCESS); /* the CPU has no streams */
        EXPECT(y2[0] == keep);
        EXPECT(pask_plan_execute(NULL, &ok, NULL) == PASK_ERROR_NULL_POINTER);
        EXPECT(pask_plan_create_conv2d(&plan, ctx, &bad, &ep, xd, wd, bd, NULL, yd) == PASK_ERROR_INVALID_ARGUMENT);
        CHECK(pask_plan_destroy(plan));
        CHECK(pask_plan_destroy(NULL));

        /* gemm with a bias: C[2x3] = A[2x4] B[4x3] + bias, against a loop here */
        float ga[8], gb[12], gbias[3], gc[6];
        for (int i = 0; i < 8; ++i) ga[i] = frand();
        for (int i = 0; i < 12; ++i) gb[i] = frand();
        for (int i = 0; i < 3; ++i) gbias[i] = frand();
        pask_plan_t gp = NULL;
        CHECK(pask_plan_create_gemm(&gp, ctx, PASK_DTYPE_FLOAT32, 0, 0, 2, 3, 4, NULL, 4, 3, 3, 1));
        pask_plan_args_t ga_args = {.x = ga, .w = gb, .bias = gbias, .y = gc};
        CHECK(pask_plan_execute(gp, &ga_args, NULL));
        for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 3; ++j) {
                double acc = gbias[j];
                for (int k = 0; k < 4; ++k) acc += (double)ga[i * 4 + k] * gb[k * 3 + j];
                EXPECT(fabs(acc - gc[i * 3 + j]) < 1e-5);
            }
        pask_plan_args_t gno = {.x = ga, .w = gb, .y = gc};
        EXPECT(pask_plan_execute(gp, &gno, NULL) == PASK_ERROR_NULL_POINTER);
        CHECK(pask_plan_destroy(gp));
    }

    {
        /* eltwise: y = relu(x * m + a), m per channel {1, 3, 1, 1}, a full; then cat of x and y */
        float ex[2 * 3 * 2 * 2], em[3], ea[2 * 3 * 2 * 2], ey[2 * 3 * 2 * 2], ec[2 * 6 * 2 * 2];
        for (int i = 0; i < 24; ++i) ex[i] = frand(), ea[i] = frand();
        for (int i = 0; i < 3; ++i) em[i] = frand();
        const int64_t full[4] = {2, 3, 2, 2}, chan[4] = {1, 3, 1, 1}, both[4] = {2, 6, 2, 2};
        pask_tensor_desc_t exd, emd, ecd;
        CHECK(pask_tensor_desc_create(&exd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, full));
        CHECK(pask_tensor_desc_create(&emd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, chan));
        CHECK(pask_tensor_desc_create(&ecd, PASK_DTYPE_FLOAT32, PASK_LAYOUT_NCHW, 4, both));
        const pask_eltwise_params_t relu = {.activation = PASK_ACTIVATION_RELU};
        CHECK(pask_eltwise_forward(ctx, &relu, exd, ex, emd, em, exd, ea, exd, ey));
        for (int i = 0; i < 24; ++i) {
            double v = (double)ex[i] * em[(i / 4) % 3] + ea[i];
            EXPECT(fabs((v > 0 ? v : 0) - ey[i]) < 1e-6);
        }
        EXPECT(strcmp(pask_last_solver(), "eltwise.cpu") == 0);
        /* clamp and leaky ReLU take their parameters from the struct */
        const pask_eltwise_params_t clamp = {.activation = PASK_ACTIVATION_CLAMP, .params = {-0.25f, 0.5f}};
        CHECK(pask_eltwise_forward(ctx, &clamp, exd, ex, NULL, NULL, exd, ea, exd, ey));
        for (int i = 0; i < 24; ++i) {
            double v = (double)ex[i] + ea[i];
            EXPECT(fabs((v < -0.25 ? -0.25 : v > 0.5 ? 0.5 : v) - ey[i]) < 1e-6);
        }
        const pask_eltwise_params_t leaky = {.activation = PASK_ACTIVATION_LEAKY_RELU, .params = {0.125f, 0.f}};
        CHECK(pask_eltwise_forward(ctx, &leaky, exd, ex, NULL, NULL, NULL, NULL, exd, ey));
        for (int i = 0; i < 24; ++i) EXPECT(fabs((ex[i] < 0 ? ex[i] * 0.125 : ex[i]) - ey[i]) < 1e-6);
        /* clamp with lo > hi: a clear status */
        const pask_eltwise_params_t bad = {.activation = PASK_ACTIVATION_CLAMP, .params = {1.f, 0.f}};
        EXPECT(pask_eltwise_forward(ctx, &bad, exd, ex, NULL, NULL, NULL, NULL, exd, ey) == PASK_ERROR_INVALID_ARGUMENT);
        /* a multiplier that does not broadcast: a clear status, nothing written */
        EXPECT(pask_eltwise_forward(ctx, NULL, exd, ex, ecd, ec, NULL, NULL, exd, ey) ==
               PASK_ERROR_SHAPE_MISMATCH);
        const_pask_tensor_desc_t parts[2] = {exd, exd};
        const void *srcs[2] = {ex, ey};
        int64_t cat_dims[4];
        CHECK(pask_cat_output_dims(2, parts, cat_dims));
        EXPECT(cat_dims[0] == 2 && cat_dims[1] == 6 && cat_dims[2] == 2 && cat_dims[3] == 2);
        pask_plan_t cp = NULL;
        CHECK(pask_plan_create_cat(&cp, ctx, 2, parts, ecd));
        pask_plan_args_t ca = {.xs = srcs, .y = ec};
        CHECK(pask_plan_execute(cp, &ca, NULL));
        for (int n = 0; n < 2; ++n)
            for (int i = 0; i < 12; ++i) {
                EXPECT(ec[n * 24 + i] == ex[n * 12 + i]);
                EXPECT(ec[n * 24 + 12 + i] == ey[n * 12 + i]);
            }
        CHECK(pask_plan_destroy(cp));
        pask_tensor_desc_destroy(exd);
        pask_tensor_desc_destroy(emd);
        pask_tensor_desc_destroy(ecd);
    }

    /* hints: a fresh context preloads the layer's kernel, then the call hits it */
    pask_options_t opts;
    CHECK(pask_options_create(&opts));
    CHECK(pask_options_set(opts, "policy", "pask"));
    CHECK(pask_options_set(opts, "loader_threads", "1"));
    pask_context_t warm = NULL;
    CHECK(pask_context_create(&warm, PASK_DEVICE_CPU, 0, opts));
    CHECK(pask_options_destroy(opts));
    CHECK(pask_hint_conv2d(warm, &params, &ep, xd, wd, bd, NULL));
    int idle = 0;
    CHECK(pask_context_wait_loads(warm, 30000, &idle));
    EXPECT(idle == 1);
    CHECK(pask_conv2d_forward(warm, &params, &ep, xd, x, wd, w, bd, b, NULL, NULL, yd, y));
    pask_stats_t st;
    CHECK(pask_context_get_stats(warm, &st));
    EXPECT(st.calls == 1 && st.resident_hits == 1 && st.blocking_loads == 0 && st.prefetches == 1);
    EXPECT(st.hints == 1 && st.hints_matched == 1);
    const char *policy = NULL;
    CHECK(pask_context_get_policy(warm, &policy));
    EXPECT(strcmp(policy, "pask") == 0);
    CHECK(pask_context_destroy(warm));

    pask_tensor_desc_destroy(xd);
    pask_tensor_desc_destroy(wd);
    pask_tensor_desc_destroy(bd);
    pask_tensor_desc_destroy(yd);
    CHECK(pask_context_destroy(ctx));
    printf("paskdnn C API test passed (max error %.2e, solver %s)\n", worst, "ok");
    return 0;
}

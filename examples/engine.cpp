// A small C++ inference engine on paskdnn's C API.
//
// It builds a little convolutional network (conv 3x3 + ReLU, max pool, a
// residual block of two convs with the add fused into the second, global
// average pool, linear), prepares one plan per layer and hints them to the
// context when the model is loaded, then runs inferences (one
// pask_plan_execute per layer). The loader threads bring the
// kernels in while the engine prepares its weights, so the first inference
// finds them resident.
//
//   export PKG_CONFIG_PATH=$(python3 -m paskdnn config --pkgconfig-dir)
//   c++ -std=c++17 engine.cpp $(pkg-config --cflags --libs paskdnn) -o engine && ./engine
//
// Exit status 0 when the network's output matches a plain float64 loop
// implementation below and every call of the hinted run hit a resident kernel.
#include <paskdnn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// ---- thin RAII over the C API -------------------------------------------------

void check(pask_status_t s, const char *what) {
    if (s != PASK_SUCCESS)
        throw std::runtime_error(std::string(what) + ": " + pask_status_string(s) + ": " + pask_last_error_message());
}

struct DescDeleter {
    void operator()(pask_tensor_desc *d) const { pask_tensor_desc_destroy(d); }
};
using Desc = std::unique_ptr<pask_tensor_desc, DescDeleter>;

Desc make_desc(pask_layout_t layout, std::vector<int64_t> dims) {
    pask_tensor_desc_t d = nullptr;
    check(pask_tensor_desc_create(&d, PASK_DTYPE_FLOAT32, layout, static_cast<int>(dims.size()), dims.data()),
          "pask_tensor_desc_create");
    return Desc(d);
}

struct ContextDeleter {
    void operator()(pask_context *c) const { pask_context_destroy(c); }
};
using Context = std::unique_ptr<pask_context, ContextDeleter>;

Context make_context(const char *policy) {
    pask_options_t opts = nullptr;
    check(pask_options_create(&opts), "pask_options_create");
    check(pask_options_set(opts, "policy", policy), "pask_options_set");
    pask_context_t ctx = nullptr;
    pask_status_t s = pask_context_create(&ctx, PASK_DEVICE_CPU, 0, opts);
    pask_options_destroy(opts);
    check(s, "pask_context_create");
    return Context(ctx);
}

std::vector<float> random_vector(size_t n, float scale, std::mt19937 &rng) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (auto &x : v) x = u(rng);
    return v;
}

// ---- the network ----------------------------------------------------------------

// NCHW activations, OIHW weights, batch 1.
struct Conv {
    int64_t cin, cout, k, stride, pad;
    bool relu;
    std::vector<float> w, b;
};

struct Net {
    static constexpr int64_t H = 32, C = 3;
    Conv stem{3, 16, 3, 1, 1, true, {}, {}};
    Conv block1{16, 16, 3, 1, 1, true, {}, {}};
    Conv block2{16, 16, 3, 1, 1, true, {}, {}};  // + residual (the block input), then ReLU
    std::vector<float> fc_w, fc_b;                // 10 x 16
    static constexpr int64_t classes = 10;

    explicit Net(unsigned seed) {
        std::mt19937 rng(seed);
        for (Conv *c : {&stem, &block1, &block2}) {
            c->w = random_vector(size_t(c->cout * c->cin * c->k * c->k), 1.0f / std::sqrt(float(c->cin * c->k * c->k)), rng);
            c->b = random_vector(size_t(c->cout), 0.1f, rng);
        }
        fc_w = random_vector(size_t(classes * 16), 0.25f, rng);
        fc_b = random_vector(size_t(classes), 0.1f, rng);
    }
};

pask_conv2d_params_t conv_params(const Conv &c) {
    return pask_conv2d_params_t{{c.stride, c.stride}, {c.pad, c.pad}, {c.pad, c.pad}, {1, 1}, 1};
}

pask_pool2d_params_t maxpool_params() {
    return pask_pool2d_params_t{PASK_POOL_MAX, {2, 2}, {2, 2}, {0, 0}, {0, 0}, {1, 1}, 0, 0, 0};
}

pask_pool2d_params_t global_avg_params(int64_t h) {
    return pask_pool2d_params_t{PASK_POOL_AVG, {h, h}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 0, 1, 0};
}

struct PlanDeleter {
    void operator()(pask_plan *p) const { pask_plan_destroy(p); }
};
using Plan = std::unique_ptr<pask_plan, PlanDeleter>;

// The engine prepares one plan per layer at model load (validated and hashed
// once), hints them in execution order, and runs each inference as one
// pask_plan_execute per layer with that inference's buffers.
class Engine {
public:
    Engine(const Net &net, pask_context_t ctx) : net_(net), ctx_(ctx) {
        const int64_t h = Net::H, h2 = Net::H / 2;
        stem_ = conv_plan(net_.stem, h, false);
        auto ad = make_desc(PASK_LAYOUT_NCHW, {1, 16, h, h}), pd = make_desc(PASK_LAYOUT_NCHW, {1, 16, h2, h2});
        auto gd = make_desc(PASK_LAYOUT_NCHW, {1, 16, 1, 1});
        auto pool = maxpool_params();
        pask_plan_t p = nullptr;
        check(pask_plan_create_pool2d(&p, ctx_, &pool, ad.get(), pd.get()), "pask_plan_create_pool2d");
        pool_.reset(p);
        block1_ = conv_plan(net_.block1, h2, false);
        block2_ = conv_plan(net_.block2, h2, true);
        auto gap = global_avg_params(h2);
        check(pask_plan_create_pool2d(&p, ctx_, &gap, pd.get(), gd.get()), "pask_plan_create_pool2d");
        gap_.reset(p);
        pask_epilogue_t ep{1.0f, 0.0f, PASK_ACTIVATION_NONE, {0.0f, 0.0f}};
        check(pask_plan_create_gemm(&p, ctx_, PASK_DTYPE_FLOAT32, 0, 1, 1, Net::classes, 16, &ep, 16, 16, Net::classes,
                                    1),
              "pask_plan_create_gemm");
        fc_.reset(p);
    }

    // Tells the context, in execution order, every Problem run() will execute.
    void give_hints() {
        for (const Plan *plan : {&stem_, &pool_, &block1_, &block2_, &gap_, &fc_})
            check(pask_plan_hint(plan->get()), "pask_plan_hint");
    }

    std::vector<float> run(const std::vector<float> &image) {
        const int64_t h = Net::H, h2 = Net::H / 2;
        std::vector<float> a(size_t(16 * h * h)), p(size_t(16 * h2 * h2)), b1(p.size()), b2(p.size()), g(16),
            out(Net::classes);
        execute(stem_, args(image.data(), net_.stem.w.data(), net_.stem.b.data(), nullptr, a.data()), "stem");
        execute(pool_, args(a.data(), nullptr, nullptr, nullptr, p.data()), "max pool");
        execute(block1_, args(p.data(), net_.block1.w.data(), net_.block1.b.data(), nullptr, b1.data()), "block1");
        // residual: the block input
        execute(block2_, args(b1.data(), net_.block2.w.data(), net_.block2.b.data(), p.data(), b2.data()), "block2");
        execute(gap_, args(b2.data(), nullptr, nullptr, nullptr, g.data()), "global average pool");
        execute(fc_, args(g.data(), net_.fc_w.data(), net_.fc_b.data(), nullptr, out.data()), "linear");
        return out;
    }

private:
    Plan conv_plan(const Conv &c, int64_t h, bool with_residual) {
        auto params = conv_params(c);
        auto xd = make_desc(PASK_LAYOUT_NCHW, {1, c.cin, h, h});
        auto wd = make_desc(PASK_LAYOUT_NCHW, {c.cout, c.cin, c.k, c.k});
        auto bd = make_desc(PASK_LAYOUT_ROW_MAJOR, {c.cout});
        int64_t od[4];
        check(pask_conv2d_output_dims(&params, xd.get(), wd.get(), od), "pask_conv2d_output_dims");
        auto yd = make_desc(PASK_LAYOUT_NCHW, {od[0], od[1], od[2], od[3]});
        Desc rd = with_residual ? make_desc(PASK_LAYOUT_NCHW, {od[0], od[1], od[2], od[3]}) : Desc();
        pask_epilogue_t ep{1.0f, 0.0f, c.relu ? PASK_ACTIVATION_RELU : PASK_ACTIVATION_NONE, {0.0f, 0.0f}};
        pask_plan_t p = nullptr;
        check(pask_plan_create_conv2d(&p, ctx_, &params, &ep, xd.get(), wd.get(), bd.get(), rd.get(), yd.get()),
              "pask_plan_create_conv2d");
        return Plan(p);  // the descriptors are not retained
    }

    // One execution's pointers (pask_plan_args_t: the fields an op does not use stay NULL).
    static pask_plan_args_t args(const void *x, const void *w, const void *bias, const void *residual, void *y) {
        pask_plan_args_t a{};
        a.x = x; a.w = w; a.bias = bias; a.residual = residual; a.y = y;
        return a;
    }

    static void execute(const Plan &plan, pask_plan_args_t args, const char *what) {
        check(pask_plan_execute(plan.get(), &args, nullptr), what);  // NULL stream: the CPU
    }

    const Net &net_;
    pask_context_t ctx_;
    Plan stem_, pool_, block1_, block2_, gap_, fc_;
};

// ---- an independent float64 implementation, to check the engine ------------------

std::vector<double> ref_conv(const Conv &c, const std::vector<double> &x, int64_t h, const std::vector<double> *res) {
    const int64_t oh = (h + 2 * c.pad - c.k) / c.stride + 1;
    std::vector<double> y(size_t(c.cout * oh * oh));
    for (int64_t o = 0; o < c.cout; ++o)
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < oh; ++j) {
                double acc = c.b[size_t(o)];
                for (int64_t ci = 0; ci < c.cin; ++ci)
                    for (int64_t r = 0; r < c.k; ++r)
                        for (int64_t s = 0; s < c.k; ++s) {
                            int64_t ih = i * c.stride - c.pad + r, iw = j * c.stride - c.pad + s;
                            if (ih < 0 || iw < 0 || ih >= h || iw >= h) continue;
                            acc += x[size_t((ci * h + ih) * h + iw)] * c.w[size_t(((o * c.cin + ci) * c.k + r) * c.k + s)];
                        }
                size_t idx = size_t((o * oh + i) * oh + j);
                if (res) acc += (*res)[idx];
                y[idx] = c.relu ? std::max(acc, 0.0) : acc;
            }
    return y;
}

std::vector<double> reference(const Net &net, const std::vector<float> &image) {
    const int64_t h = Net::H, h2 = h / 2;
    std::vector<double> x(image.begin(), image.end());
    auto a = ref_conv(net.stem, x, h, nullptr);
    std::vector<double> p(size_t(16 * h2 * h2));
    for (int64_t c = 0; c < 16; ++c)
        for (int64_t i = 0; i < h2; ++i)
            for (int64_t j = 0; j < h2; ++j) {
                double m = -INFINITY;
                for (int r = 0; r < 2; ++r)
                    for (int s = 0; s < 2; ++s) m = std::max(m, a[size_t((c * h + 2 * i + r) * h + 2 * j + s)]);
                p[size_t((c * h2 + i) * h2 + j)] = m;
            }
    auto b1 = ref_conv(net.block1, p, h2, nullptr);
    auto b2 = ref_conv(net.block2, b1, h2, &p);
    std::vector<double> g(16, 0.0), out(Net::classes);
    for (int64_t c = 0; c < 16; ++c) {
        for (int64_t i = 0; i < h2 * h2; ++i) g[size_t(c)] += b2[size_t(c * h2 * h2 + i)];
        g[size_t(c)] /= double(h2 * h2);
    }
    for (int64_t k = 0; k < Net::classes; ++k) {
        double acc = net.fc_b[size_t(k)];
        for (int64_t c = 0; c < 16; ++c) acc += g[size_t(c)] * net.fc_w[size_t(k * 16 + c)];
        out[size_t(k)] = acc;
    }
    return out;
}

}  // namespace

int main() {
    try {
        Net net(2026);
        std::mt19937 rng(7);
        std::vector<float> image = random_vector(size_t(Net::C * Net::H * Net::H), 1.0f, rng);
        auto expect = reference(net, image);

        Context ctx = make_context("pask");
        std::unique_ptr<Engine> holder(new Engine(net, ctx.get()));  // plans go before the context
        Engine &engine = *holder;
        engine.give_hints();  // at model load: the loader threads start now
        int idle = 0;
        check(pask_context_wait_loads(ctx.get(), 30000, &idle), "pask_context_wait_loads");
        auto first = engine.run(image);
        auto second = engine.run(image);

        double worst = 0;
        for (size_t i = 0; i < expect.size(); ++i)
            worst = std::max({worst, std::fabs(double(first[i]) - expect[i]), std::fabs(double(second[i]) - expect[i])});
        pask_stats_t st;
        check(pask_context_get_stats(ctx.get(), &st), "pask_context_get_stats");
        std::printf("engine: %lld calls, %lld resident hits, %lld hints matched, %lld kernels loaded, max error %.2e\n",
                    (long long)st.calls, (long long)st.resident_hits, (long long)st.hints_matched,
                    (long long)st.loads, worst);
        if (worst > 1e-4) {
            std::fprintf(stderr, "engine: output differs from the reference (max error %.3e)\n", worst);
            return 1;
        }
        if (st.calls != 12 || st.resident_hits != 12 || st.hints_matched != 6) {
            std::fprintf(stderr, "engine: expected every call of the hinted run to hit a resident kernel\n");
            return 1;
        }
        std::puts("engine OK");
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "engine: %s\n", e.what());
        return 1;
    }
}

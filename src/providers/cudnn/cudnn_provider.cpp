#include "cudnn_provider.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <unordered_map>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../../core/trace.hpp"
#include "../../backends/cuda/cuda_api.hpp"

namespace pask::cudnn {

namespace {

// Tensor ids in every graph's variant pack.
enum : int64_t { UID_X = 1, UID_W = 2, UID_Y = 3, UID_BIAS = 4, UID_RESIDUAL = 5, UID_VIRTUAL = 100 };

int data_type(pask_dtype_t t) {
    return t == PASK_DTYPE_FLOAT16 ? DATA_HALF : t == PASK_DTYPE_BFLOAT16 ? DATA_BFLOAT16 : DATA_FLOAT;
}

[[noreturn]] void fail_status(const Api &a, Status s, const char *what) {
    fail(s == STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_LOAD_FAILED,
         a.message(s, what));
}

void check(const Api &a, Status s, const char *what) {
    if (s != STATUS_SUCCESS) fail_status(a, s, what);
}

// Owns the backend descriptors of one graph (kept alive with its plan).
class Descs {
public:
    explicit Descs(const Api &a) : a_(a) {}
    ~Descs() {
        for (auto it = all_.rbegin(); it != all_.rend(); ++it) a_.cudnnBackendDestroyDescriptor(*it);
    }
    Descs(const Descs &) = delete;
    Descs &operator=(const Descs &) = delete;

    Desc make(int type) {
        Desc d = nullptr;
        check(a_, a_.cudnnBackendCreateDescriptor(type, &d), "cudnnBackendCreateDescriptor");
        all_.push_back(d);
        return d;
    }
    void set(Desc d, int attr, int type, int64_t count, const void *value, const char *what) {
        check(a_, a_.cudnnBackendSetAttribute(d, attr, type, count, value), what);
    }
    void finalize(Desc d, const char *what) { check(a_, a_.cudnnBackendFinalize(d), what); }

    Desc tensor(int64_t uid, int dtype, const std::vector<int64_t> &dims, const std::vector<int64_t> &strides,
                bool is_virtual) {
        Desc t = make(TENSOR_DESCRIPTOR);
        const int64_t align = 16;
        const bool virt = is_virtual;
        set(t, ATTR_TENSOR_DATA_TYPE, TYPE_DATA_TYPE, 1, &dtype, "tensor data type");
        set(t, ATTR_TENSOR_DIMENSIONS, TYPE_INT64, static_cast<int64_t>(dims.size()), dims.data(), "tensor dimensions");
        set(t, ATTR_TENSOR_STRIDES, TYPE_INT64, static_cast<int64_t>(strides.size()), strides.data(), "tensor strides");
        set(t, ATTR_TENSOR_UNIQUE_ID, TYPE_INT64, 1, &uid, "tensor id");
        set(t, ATTR_TENSOR_BYTE_ALIGNMENT, TYPE_INT64, 1, &align, "tensor alignment");
        set(t, ATTR_TENSOR_IS_VIRTUAL, TYPE_BOOLEAN, 1, &virt, "tensor virtual flag");
        finalize(t, "tensor descriptor");
        return t;
    }
    // y = mode(x[, b]) as a pointwise operation
    Desc pointwise(int mode, Desc x, Desc b, Desc y, double upper_clip = -1) {
        Desc pw = make(POINTWISE_DESCRIPTOR);
        const int prec = DATA_FLOAT;
        set(pw, ATTR_POINTWISE_MODE, TYPE_POINTWISE_MODE, 1, &mode, "pointwise mode");
        set(pw, ATTR_POINTWISE_MATH_PREC, TYPE_DATA_TYPE, 1, &prec, "pointwise precision");
        if (mode == POINTWISE_RELU_FWD) {
            // relu/relu6 must keep NaN, as paskdnn's own kernels and PyTorch do; say so
            // rather than leave it to the engine's default (cuDNN-frontend sets this
            // attribute only for the relu modes, so only they get it here)
            const int nan = PROPAGATE_NAN;
            set(pw, ATTR_POINTWISE_NAN_PROPAGATION, TYPE_NAN_PROPAGATION, 1, &nan, "pointwise NaN propagation");
        }
        if (mode == POINTWISE_SWISH_FWD) {  // silu = swish with beta 1
            const double swish_beta = 1.0;
            set(pw, ATTR_POINTWISE_SWISH_BETA, TYPE_DOUBLE, 1, &swish_beta, "swish beta");
        }
        if (upper_clip >= 0) {
            const float lo = 0.0f, hi = static_cast<float>(upper_clip);
            set(pw, ATTR_POINTWISE_RELU_LOWER_CLIP, TYPE_FLOAT, 1, &lo, "relu lower clip");
            set(pw, ATTR_POINTWISE_RELU_UPPER_CLIP, TYPE_FLOAT, 1, &hi, "relu upper clip");
        }
        finalize(pw, "pointwise descriptor");
        Desc op = make(OPERATION_POINTWISE_DESCRIPTOR);
        set(op, ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, TYPE_BACKEND_DESCRIPTOR, 1, &pw, "pointwise op mode");
        set(op, ATTR_OPERATION_POINTWISE_XDESC, TYPE_BACKEND_DESCRIPTOR, 1, &x, "pointwise op x");
        if (b) set(op, ATTR_OPERATION_POINTWISE_BDESC, TYPE_BACKEND_DESCRIPTOR, 1, &b, "pointwise op b");
        set(op, ATTR_OPERATION_POINTWISE_YDESC, TYPE_BACKEND_DESCRIPTOR, 1, &y, "pointwise op y");
        finalize(op, "pointwise operation");
        return op;
    }
    const Api &api() const { return a_; }

private:
    const Api &a_;
    std::vector<Desc> all_;
};

// The epilogue act(acc + bias + residual) as pointwise operations after the
// producer op writing `acc`; the last one writes y (uid UID_Y). Intermediate
// results are virtual float tensors.
void append_epilogue(Descs &d, std::vector<Desc> &ops, Desc acc, Desc y, const Problem &p, Desc bias, Desc residual,
                     const std::vector<int64_t> &dims, const std::vector<int64_t> &strides) {
    int64_t next_uid = UID_VIRTUAL + 1;
    std::vector<std::pair<int, Desc>> stages;  // (mode, b operand)
    // residual before bias: cuDNN 9's precompiled conv-bias-activation engines
    // match this order; bias first leaves only runtime-compiled engines
    if (residual) stages.push_back({POINTWISE_ADD, residual});
    if (bias) stages.push_back({POINTWISE_ADD, bias});
    if (p.activation != PASK_ACTIVATION_NONE) {
        const int mode = CudnnProvider::activation_mode(p.activation);
        if (mode < 0)  // the solvers' applicable() keeps such Problems away
            fail(PASK_ERROR_UNSUPPORTED, "cuDNN has no pointwise mode for activation " +
                                             std::to_string(int(p.activation)));
        stages.push_back({mode, nullptr});
    }
    Desc cur = acc;
    for (size_t i = 0; i < stages.size(); ++i) {
        const bool last = i + 1 == stages.size();
        Desc out = last ? y : d.tensor(next_uid++, DATA_FLOAT, dims, strides, true);
        const double clip = stages[i].first == POINTWISE_RELU_FWD && p.activation == PASK_ACTIVATION_RELU6 ? 6.0 : -1;
        ops.push_back(d.pointwise(stages[i].first, cur, stages[i].second, out, clip));
        cur = out;
    }
}

}  // namespace

// ---- code objects -----------------------------------------------------------------

namespace {

class GraphPlan final : public Plan {
public:
    GraphPlan(CudnnProvider &prov, std::unique_ptr<Descs> descs, Desc plan, int64_t workspace, bool has_bias,
              bool has_residual, std::string origin)
        : Plan(std::move(origin), prov), descs_(std::move(descs)), plan_(plan), workspace_(workspace),
          has_bias_(has_bias), has_residual_(has_residual) {}

    int64_t workspace_bytes() const override { return workspace_; }

    Status enqueue(Handle h, void *stream, const OpArgs &a, void *ws) const override {
        const Api &api = prov_.api();
        int64_t uids[5] = {UID_X, UID_W, UID_Y, 0, 0};
        void *ptrs[5] = {const_cast<void *>(a.x), const_cast<void *>(a.w), a.y, nullptr, nullptr};
        int64_t n = 3;
        if (has_bias_) {
            uids[n] = UID_BIAS;
            ptrs[n++] = const_cast<void *>(a.bias);
        }
        if (has_residual_) {
            uids[n] = UID_RESIDUAL;
            ptrs[n++] = const_cast<void *>(a.residual);
        }
        Status s = api.cudnnSetStream(h, stream);
        if (s != STATUS_SUCCESS) return s;
        // Variant packs are kept per pointer set (a runner's fixed buffers, an
        // allocator's reused blocks): a model that repeats a layer shape runs
        // one plan on several pointer sets, one pack each (up to kPacks, then
        // the oldest is replaced). Callers hold the handle alone, so one call
        // at a time gets here.
        std::lock_guard<std::mutex> lock(vp_mu_);
        Pack *hit = nullptr;
        for (Pack &k : packs_) {
            bool same = k.vp && k.ws == ws;
            for (int64_t i = 0; i < n && same; ++i) same = k.ptrs[i] == ptrs[i];
            if (same) {
                hit = &k;
                break;
            }
        }
        if (!hit) {
            Pack &k = packs_[next_pack_];
            next_pack_ = (next_pack_ + 1) % kPacks;
            if (k.vp) api.cudnnBackendDestroyDescriptor(k.vp);
            k.vp = nullptr;
            Desc vp = nullptr;
            s = api.cudnnBackendCreateDescriptor(VARIANT_PACK_DESCRIPTOR, &vp);
            if (s != STATUS_SUCCESS) return s;
            s = api.cudnnBackendSetAttribute(vp, ATTR_VARIANT_PACK_UNIQUE_IDS, TYPE_INT64, n, uids);
            if (s == STATUS_SUCCESS) s = api.cudnnBackendSetAttribute(vp, ATTR_VARIANT_PACK_DATA_POINTERS, TYPE_VOID_PTR, n, ptrs);
            if (s == STATUS_SUCCESS) s = api.cudnnBackendSetAttribute(vp, ATTR_VARIANT_PACK_WORKSPACE, TYPE_VOID_PTR, 1, &ws);
            if (s == STATUS_SUCCESS) s = api.cudnnBackendFinalize(vp);
            if (s != STATUS_SUCCESS) {
                api.cudnnBackendDestroyDescriptor(vp);
                return s;
            }
            k.vp = vp;
            k.ws = ws;
            for (int64_t i = 0; i < 5; ++i) k.ptrs[i] = i < n ? ptrs[i] : nullptr;
            hit = &k;
        }
        return api.cudnnBackendExecute(h, plan_, hit->vp);
    }

    ~GraphPlan() override {
        for (Pack &k : packs_)
            if (k.vp) prov_.api().cudnnBackendDestroyDescriptor(k.vp);
    }

private:
    static constexpr int kPacks = 8;
    struct Pack {
        Desc vp = nullptr;
        void *ptrs[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
        void *ws = nullptr;
    };
    mutable std::mutex vp_mu_;
    mutable Pack packs_[kPacks];
    mutable int next_pack_ = 0;
    std::unique_ptr<Descs> descs_;
    Desc plan_;
    int64_t workspace_;
    bool has_bias_, has_residual_;
};

class PoolPlan final : public Plan {
public:
    PoolPlan(CudnnProvider &prov, TensorDesc x, TensorDesc y, PoolingDesc pool, std::string origin)
        : Plan(std::move(origin), prov), x_(x), y_(y), pool_(pool) {}
    ~PoolPlan() override {
        const Api &a = prov_.api();
        a.cudnnDestroyPoolingDescriptor(pool_);
        a.cudnnDestroyTensorDescriptor(y_);
        a.cudnnDestroyTensorDescriptor(x_);
    }
    Status enqueue(Handle h, void *stream, const OpArgs &a, void *) const override {
        const Api &api = prov_.api();
        const float one = 1.0f, zero = 0.0f;
        Status s = api.cudnnSetStream(h, stream);
        if (s == STATUS_SUCCESS) s = api.cudnnPoolingForward(h, pool_, &one, x_, a.x, &zero, y_, a.y);
        return s;
    }

private:
    TensorDesc x_, y_;
    PoolingDesc pool_;
};

std::vector<int64_t> act_strides(const Problem &p, int64_t c, int64_t h, int64_t w) {
    if (p.layout == PASK_LAYOUT_NHWC) return {h * w * c, 1, w * c, c};
    return {c * h * w, h * w, w, 1};
}

Problem parse_key(const KernelKey &key, int *rank, bool *rtc) {
    // constants: "cfg=<rank>,rtc=<0|1>,p=<Problem fields>"
    std::map<std::string, int64_t> v;
    Problem p = parse_problem_constants(key, &v);
    require(v.count("cfg") && v["cfg"] >= 0, PASK_ERROR_LOAD_FAILED, "malformed cuDNN kernel key " + key.str());
    *rank = static_cast<int>(v["cfg"]);
    *rtc = v["rtc"] == 1;
    return p;
}

}  // namespace

void Plan::execute(const OpArgs &a) const {
    CudaBackend &b = prov_.backend();
    CudaBackend::Scope scope(b);  // the caller may have another device's context current
    void *ws = b.alloc_async(static_cast<size_t>(workspace_bytes()));  // throws PASK_ERROR_OUT_OF_MEMORY
    Status s;
    {
        std::lock_guard<std::mutex> lock(prov_.exec_mu());
        Handle h = prov_.exec_handle();
        s = enqueue(h, b.current_stream(), a, ws);
    }
    b.free_async(ws);
    if (s != STATUS_SUCCESS)
        fail(s == STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_INTERNAL,
             prov_.api().message(s, "cuDNN execute"));
}

// ---- provider ---------------------------------------------------------------------

CudnnProvider::CudnnProvider(CudaBackend &backend, std::string library, Trace *trace)
    : backend_(backend), library_(std::move(library)), trace_(trace) {}

CudnnProvider::~CudnnProvider() {
    if (!api_) return;
    try {
        CudaBackend::Scope scope(backend_);
        primer_.reset();  // a plan goes before the handles it was built and run with
        std::lock_guard<std::mutex> lock(handles_mu_);
        for (Handle h : build_handles_) api_->cudnnDestroy(h);
        if (exec_handle_) {
            api_->cudnnSetStream(exec_handle_, nullptr);  // the last caller's stream may be gone
            api_->cudnnDestroy(exec_handle_);
        }
    } catch (...) {  // the device context is gone: nothing left to release
    }
}

bool CudnnProvider::available() const {
    std::call_once(open_once_, [this] { api_ = Api::get(library_, &why_); });
    return api_ != nullptr;
}

std::string CudnnProvider::unavailable_reason() const {
    available();
    return why_;
}

std::string CudnnProvider::describe() const {
    if (!available()) return "cuDNN unavailable: " + why_;
    const size_t v = api_->version;
    return "cuDNN " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) +
           " (" + api_->path + ")";
}

void CudnnProvider::prepare() {
    // prime_thread() runs only once this has ended, whichever way it ends
    struct Done {
        CudnnProvider *p;
        ~Done() {
            std::lock_guard<std::mutex> lock(p->prepare_mu_);
            p->prepared_ = true;
        }
    } done{this};
    if (!available()) return;
    const int64_t t0 = trace_ ? trace_->now_us() : 0;
    try {
        exec_handle();
    } catch (const Error &) {
        // reported again to the call that needs the handle
        return;
    }
    if (trace_ && trace_->enabled())
        trace_->complete("cuDNN handle", "load", t0, trace_->now_us() - t0, "\"library\":\"" + api_->path + "\"");
    // The first heuristics query of a process pays a one-time set-up (about
    // 0.1 s on an H100): pay it here with a small convolution's plan.
    Problem tiny;
    tiny.op = PASK_OP_CONV2D;
    tiny.device = PASK_DEVICE_CUDA;
    tiny.device_index = backend_.device_index();
    tiny.dtype = PASK_DTYPE_FLOAT16;
    tiny.layout = tiny.weight_layout = PASK_LAYOUT_NHWC;
    tiny.n = 1;
    tiny.c = tiny.o = 8;
    tiny.h = tiny.w = tiny.oh = tiny.ow = 8;
    tiny.kh = tiny.kw = 3;
    tiny.pad_pre[0] = tiny.pad_pre[1] = tiny.pad_post[0] = tiny.pad_post[1] = 1;
    const int64_t w0 = trace_ ? trace_->now_us() : 0;
    // 3x3 and 1x1 convolutions and a matmul reach different engine families
    // (and libraries behind them: 1x1 and matmul engines load cuBLASLt).
    Problem one = tiny;
    one.kh = one.kw = 1;
    one.pad_pre[0] = one.pad_pre[1] = one.pad_post[0] = one.pad_post[1] = 0;
    Problem mm;
    mm.op = PASK_OP_GEMM;
    mm.device = PASK_DEVICE_CUDA;
    mm.device_index = tiny.device_index;
    mm.dtype = PASK_DTYPE_FLOAT16;
    mm.gm = mm.gn = mm.gk = mm.lda = mm.ldb = mm.ldc = 16;
    const Problem problems[3] = {tiny, one, mm};
    for (int i = 0; i < 3; ++i) {
        const Problem &q = problems[i];
        try {
            auto obj = build(key_for(q, 0, false, backend_.targets().front()));
            // build() ran the plan on a build handle; run it once on the
            // execution handle too, whose own first runs of these engine
            // families (and the libraries behind them) would otherwise fall on
            // a fresh process's first calls.
            if (const auto *plan = dynamic_cast<const Plan *>(obj.get())) {
                {
                    CudaBackend::Scope scope(backend_);  // build() popped its own
                    warm_up(*plan, q, exec_handle(), false);
                }
                if (i == 0) {  // the 3x3 plan primes callers' threads (prime_thread)
                    std::lock_guard<std::mutex> lock(prepare_mu_);
                    primer_ = obj;
                    primer_problem_ = q;
                }
            }
        } catch (const Error &) {
            // a warm-up only
        }
    }
    if (trace_ && trace_->enabled()) trace_->complete("cuDNN warm-up", "load", w0, trace_->now_us() - w0);
}

Handle CudnnProvider::exec_handle() {
    std::call_once(exec_once_, [this] {
        CudaBackend::Scope scope(backend_);
        Handle h = nullptr;
        Status s = api_->cudnnCreate(&h);
        if (s != STATUS_SUCCESS) exec_error_ = api_->message(s, "cudnnCreate");
        else exec_handle_ = h;
    });
    if (!exec_handle_) fail(PASK_ERROR_BACKEND_UNAVAILABLE, exec_error_);
    return exec_handle_;
}

Handle CudnnProvider::checkout_build_handle() {
    {
        std::lock_guard<std::mutex> lock(handles_mu_);
        if (!free_build_handles_.empty()) {
            Handle h = free_build_handles_.back();
            free_build_handles_.pop_back();
            return h;
        }
    }
    Handle h = nullptr;
    Status s = api_->cudnnCreate(&h);
    if (s != STATUS_SUCCESS) fail_status(*api_, s, "cudnnCreate");
    std::lock_guard<std::mutex> lock(handles_mu_);
    build_handles_.push_back(h);
    return h;
}

void CudnnProvider::return_build_handle(Handle h) {
    std::lock_guard<std::mutex> lock(handles_mu_);
    free_build_handles_.push_back(h);
}

void CudnnProvider::warm_up(const Plan &plan, const Problem &p, Handle h, bool on_caller) {
    const cuda::Driver &d = cuda::Driver::get();
    if (!d.cuStreamCreate || !d.cuStreamDestroy || !d.cuMemAllocAsync || !d.cuMemFreeAsync) return;
    const int64_t es = dtype_size(p.dtype);
    int64_t sizes[5] = {0, 0, 0, 0, 0};  // x, w, y, bias, residual (elements)
    if (p.op == PASK_OP_CONV2D || p.op == PASK_OP_POOL2D) {
        sizes[0] = p.n * p.c * p.h * p.w;
        sizes[2] = p.n * (p.op == PASK_OP_POOL2D ? p.c : p.o) * p.oh * p.ow;
        if (p.op == PASK_OP_CONV2D) {
            sizes[1] = p.o * (p.c / p.groups) * p.kh * p.kw;
            sizes[3] = p.has_bias ? p.o : 0;
            sizes[4] = p.has_residual ? sizes[2] : 0;
        }
    } else {
        sizes[0] = (p.trans_a ? p.gk : p.gm) * p.lda;
        sizes[1] = (p.trans_b ? p.gn : p.gk) * p.ldb;
        sizes[2] = p.gm * p.ldc;
        sizes[3] = p.has_bias ? p.gn : 0;
    }
    int64_t total = plan.workspace_bytes();
    for (int64_t v : sizes) total += v * es;
    if (total > (int64_t(1) << 30)) return;  // a large layer: not worth a gigabyte of scratch
    // on_caller: the calling thread's stream and the execution handle (a tiny
    // plan, already run once: nothing is loaded while the handle is held)
    const bool exec = h == exec_handle_;
    cuda::CUstream stream = on_caller ? static_cast<cuda::CUstream>(backend_.current_stream()) : nullptr;
    if (!on_caller && d.cuStreamCreate(&stream, cuda::CU_STREAM_NON_BLOCKING) != 0) return;
    cuda::CUdeviceptr ptr[6] = {0, 0, 0, 0, 0, 0};
    bool ok = true;
    for (int i = 0; i < 6 && ok; ++i) {
        const int64_t bytes = i < 5 ? sizes[i] * es : plan.workspace_bytes();
        if (bytes > 0) ok = d.cuMemAllocAsync(&ptr[i], static_cast<size_t>(bytes), stream) == 0;
    }
    if (ok) {
        auto vp = [&](int i) { return reinterpret_cast<void *>(static_cast<uintptr_t>(ptr[i])); };
        OpArgs a;
        a.x = vp(0);
        a.w = vp(1);
        a.y = vp(2);
        a.bias = vp(3);
        a.residual = vp(4);
        // On the build handle: a plan's first run includes cuDNN's lazy
        // loading of its kernels (up to tens of ms), and on the execution
        // handle (third session) the calls waited for it (an H100 trace showed
        // 40 ms waits). The execution handle's own first run of a plan still
        // costs more host time than later runs (30-100 us, H100 trace).
        // outputs are scratch: a failure here shows again in the call
        if (exec) {  // held only while queuing; the handle must not keep this stream
            std::lock_guard<std::mutex> lock(exec_mu_);
            plan.enqueue(h, stream, a, vp(5));
            if (!on_caller) api_->cudnnSetStream(h, nullptr);
        } else {
            plan.enqueue(h, stream, a, vp(5));
        }
    }
    for (auto &q : ptr)
        if (q) d.cuMemFreeAsync(q, stream);
    if (on_caller) return;  // the frees are ordered on the caller's stream
    d.cuStreamSynchronize(stream);
    if (!exec) api_->cudnnSetStream(h, nullptr);  // the handle outlives this stream
    d.cuStreamDestroy(stream);
}

void CudnnProvider::first_run(const Plan &plan, const Problem &p, Handle h, const std::string &engine) {
    const bool tracing = trace_ && trace_->enabled();
    const int64_t y0 = tracing ? trace_->now_us() : 0;
    const int64_t waited_us = yield_to_callers();
    const int64_t w0 = tracing ? trace_->now_us() : 0;
    if (tracing && waited_us > 0) trace_->complete("cudnn yield", "cudnn", y0, w0 - y0, "\"engine\":" + engine);
    warm_up(plan, p, h, false);
    if (tracing) trace_->complete("cudnn first run", "cudnn", w0, trace_->now_us() - w0, "\"engine\":" + engine);
}

bool CudnnProvider::prime_thread() {
    if (!available()) return false;
    std::shared_ptr<CodeObject> primer;
    {
        std::lock_guard<std::mutex> lock(prepare_mu_);
        if (!prepared_) return false;  // never waits for the set-up
        primer = primer_;
    }
    const auto *plan = dynamic_cast<const Plan *>(primer.get());
    if (!plan) return false;
    Handle h = nullptr;
    try {
        h = exec_handle();
    } catch (const Error &) {
        return false;  // reported to the call that needs the handle
    }
    CudaBackend::Scope scope(backend_);
    warm_up(*plan, primer_problem_, h, true);
    return true;
}

int CudnnProvider::activation_mode(pask_activation_t act) {
    switch (act) {
    case PASK_ACTIVATION_RELU:
    case PASK_ACTIVATION_RELU6: return POINTWISE_RELU_FWD;  // relu6: upper clip 6
    case PASK_ACTIVATION_SIGMOID: return POINTWISE_SIGMOID_FWD;
    case PASK_ACTIVATION_SILU: return POINTWISE_SWISH_FWD;
    case PASK_ACTIVATION_GELU: return POINTWISE_GELU_FWD;
    case PASK_ACTIVATION_GELU_TANH: return POINTWISE_GELU_APPROX_TANH_FWD;
    default: return -1;  // none, hardswish, hardsigmoid
    }
}

KernelKey CudnnProvider::key_for(const Problem &p, int rank, bool rtc, const std::string &target) {
    return KernelKey{"cudnn", "cuda", op_name(p.op), "plan", target,
                     "cfg=" + std::to_string(rank) + ",rtc=" + (rtc ? "1" : "0") + "," + problem_constants(p)};
}

std::shared_ptr<CodeObject> CudnnProvider::build(const KernelKey &key) {
    if (!available()) fail(PASK_ERROR_LOAD_FAILED, why_);
    int rank = 0;
    bool rtc = false;
    const Problem p = parse_key(key, &rank, &rtc);
    CudaBackend::Scope scope(backend_);
    // Plans are built on a build handle: building never contends with the
    // calls running on the execution handle.
    exec_handle();  // the library's one-time set-up, if prepare() has not run
    // A handle from the pool (as many as builds ever ran at once), back when done.
    Handle handle = checkout_build_handle();
    struct Return {
        CudnnProvider *p;
        Handle h;
        ~Return() { p->return_build_handle(h); }
    } give_back{this, handle};
    const Api &a = *api_;
    const int dt = data_type(p.dtype);

    if (p.op == PASK_OP_POOL2D) {
        require(rank == 0, PASK_ERROR_LOAD_FAILED, "cuDNN pooling has one configuration");
        TensorDesc x = nullptr, y = nullptr;
        PoolingDesc pd = nullptr;
        auto cleanup = [&] {
            if (pd) a.cudnnDestroyPoolingDescriptor(pd);
            if (y) a.cudnnDestroyTensorDescriptor(y);
            if (x) a.cudnnDestroyTensorDescriptor(x);
        };
        try {
            check(a, a.cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
            check(a, a.cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
            check(a, a.cudnnCreatePoolingDescriptor(&pd), "cudnnCreatePoolingDescriptor");
            auto xs = act_strides(p, p.c, p.h, p.w), ys = act_strides(p, p.c, p.oh, p.ow);
            check(a, a.cudnnSetTensor4dDescriptorEx(x, dt, int(p.n), int(p.c), int(p.h), int(p.w), int(xs[0]), int(xs[1]),
                                                    int(xs[2]), int(xs[3])),
                  "cudnnSetTensor4dDescriptorEx(x)");
            check(a, a.cudnnSetTensor4dDescriptorEx(y, dt, int(p.n), int(p.c), int(p.oh), int(p.ow), int(ys[0]),
                                                    int(ys[1]), int(ys[2]), int(ys[3])),
                  "cudnnSetTensor4dDescriptorEx(y)");
            const int mode = p.pool_mode == PASK_POOL_MAX   ? POOLING_MAX
                             : p.count_include_pad          ? POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                                            : POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
            check(a, a.cudnnSetPooling2dDescriptor(pd, mode, PROPAGATE_NAN, int(p.kh), int(p.kw), int(p.pad_pre[0]),
                                                   int(p.pad_pre[1]), int(p.stride[0]), int(p.stride[1])),
                  "cudnnSetPooling2dDescriptor");
        } catch (...) {
            cleanup();
            throw;
        }
        auto plan = std::make_shared<PoolPlan>(*this, x, y, pd, key.str());
        plan->what = "cudnnPoolingForward";
        first_run(*plan, p, handle, "-1");
        return plan;
    }

    auto d = std::make_unique<Descs>(a);
    std::vector<Desc> ops;
    Desc bias = nullptr, residual = nullptr;
    if (p.op == PASK_OP_CONV2D) {
        const int64_t cg = p.c / p.groups;
        Desc x = d->tensor(UID_X, dt, {p.n, p.c, p.h, p.w}, act_strides(p, p.c, p.h, p.w), false);
        std::vector<int64_t> wstrides = p.weight_layout == PASK_LAYOUT_NHWC
                                            ? std::vector<int64_t>{p.kh * p.kw * cg, 1, p.kw * cg, cg}
                                            : std::vector<int64_t>{cg * p.kh * p.kw, p.kh * p.kw, p.kw, 1};
        Desc w = d->tensor(UID_W, dt, {p.o, cg, p.kh, p.kw}, wstrides, false);
        const std::vector<int64_t> ydims = {p.n, p.o, p.oh, p.ow}, ystrides = act_strides(p, p.o, p.oh, p.ow);
        Desc y = d->tensor(UID_Y, dt, ydims, ystrides, false);
        const bool epilogue = p.has_bias || p.has_residual || p.activation != PASK_ACTIVATION_NONE;
        Desc acc = epilogue ? d->tensor(UID_VIRTUAL, DATA_FLOAT, ydims, ystrides, true) : y;
        if (p.has_bias) bias = d->tensor(UID_BIAS, dt, {1, p.o, 1, 1}, {p.o, 1, 1, 1}, false);
        if (p.has_residual) residual = d->tensor(UID_RESIDUAL, dt, ydims, ystrides, false);

        Desc conv = d->make(CONVOLUTION_DESCRIPTOR);
        const int comp = DATA_FLOAT, mode = CROSS_CORRELATION;
        const int64_t dims = 2;
        const int64_t dil[2] = {p.dilation[0], p.dilation[1]}, str[2] = {p.stride[0], p.stride[1]};
        const int64_t pre[2] = {p.pad_pre[0], p.pad_pre[1]}, post[2] = {p.pad_post[0], p.pad_post[1]};
        d->set(conv, ATTR_CONVOLUTION_COMP_TYPE, TYPE_DATA_TYPE, 1, &comp, "convolution compute type");
        d->set(conv, ATTR_CONVOLUTION_CONV_MODE, TYPE_CONVOLUTION_MODE, 1, &mode, "convolution mode");
        d->set(conv, ATTR_CONVOLUTION_SPATIAL_DIMS, TYPE_INT64, 1, &dims, "convolution dims");
        d->set(conv, ATTR_CONVOLUTION_DILATIONS, TYPE_INT64, 2, dil, "convolution dilations");
        d->set(conv, ATTR_CONVOLUTION_FILTER_STRIDES, TYPE_INT64, 2, str, "convolution strides");
        d->set(conv, ATTR_CONVOLUTION_PRE_PADDINGS, TYPE_INT64, 2, pre, "convolution pre-paddings");
        d->set(conv, ATTR_CONVOLUTION_POST_PADDINGS, TYPE_INT64, 2, post, "convolution post-paddings");
        d->finalize(conv, "convolution descriptor");

        Desc op = d->make(OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
        const float alpha = 1.0f, beta = 0.0f;
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_X, TYPE_BACKEND_DESCRIPTOR, 1, &x, "convolution x");
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_W, TYPE_BACKEND_DESCRIPTOR, 1, &w, "convolution w");
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_Y, TYPE_BACKEND_DESCRIPTOR, 1, &acc, "convolution y");
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, TYPE_BACKEND_DESCRIPTOR, 1, &conv, "convolution desc");
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, TYPE_FLOAT, 1, &alpha, "convolution alpha");
        d->set(op, ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, TYPE_FLOAT, 1, &beta, "convolution beta");
        d->finalize(op, "convolution operation");
        ops.push_back(op);
        if (epilogue) append_epilogue(*d, ops, acc, y, p, bias, residual, ydims, ystrides);
    } else {  // gemm: C[1,m,n] = A[1,m,k] @ B[1,k,n], transposes as strides
        const int64_t m = p.gm, n = p.gn, k = p.gk;
        Desc A = d->tensor(UID_X, dt, {1, m, k}, p.trans_a ? std::vector<int64_t>{k * p.lda, 1, p.lda}
                                                             : std::vector<int64_t>{m * p.lda, p.lda, 1}, false);
        Desc B = d->tensor(UID_W, dt, {1, k, n}, p.trans_b ? std::vector<int64_t>{n * p.ldb, 1, p.ldb}
                                                             : std::vector<int64_t>{k * p.ldb, p.ldb, 1}, false);
        const std::vector<int64_t> cdims = {1, m, n}, cstrides = {m * p.ldc, p.ldc, 1};
        Desc C = d->tensor(UID_Y, dt, cdims, cstrides, false);
        const bool epilogue = p.has_bias || p.activation != PASK_ACTIVATION_NONE;
        Desc acc = epilogue ? d->tensor(UID_VIRTUAL, DATA_FLOAT, cdims, cstrides, true) : C;
        if (p.has_bias) bias = d->tensor(UID_BIAS, dt, {1, 1, n}, {n, n, 1}, false);
        Desc mm = d->make(MATMUL_DESCRIPTOR);
        const int comp = DATA_FLOAT;
        d->set(mm, ATTR_MATMUL_COMP_TYPE, TYPE_DATA_TYPE, 1, &comp, "matmul compute type");
        d->finalize(mm, "matmul descriptor");
        Desc op = d->make(OPERATION_MATMUL_DESCRIPTOR);
        d->set(op, ATTR_OPERATION_MATMUL_ADESC, TYPE_BACKEND_DESCRIPTOR, 1, &A, "matmul a");
        d->set(op, ATTR_OPERATION_MATMUL_BDESC, TYPE_BACKEND_DESCRIPTOR, 1, &B, "matmul b");
        d->set(op, ATTR_OPERATION_MATMUL_CDESC, TYPE_BACKEND_DESCRIPTOR, 1, &acc, "matmul c");
        d->set(op, ATTR_OPERATION_MATMUL_DESC, TYPE_BACKEND_DESCRIPTOR, 1, &mm, "matmul desc");
        d->finalize(op, "matmul operation");
        ops.push_back(op);
        if (epilogue) append_epilogue(*d, ops, acc, C, p, bias, nullptr, cdims, cstrides);
    }

    Desc graph = d->make(OPERATIONGRAPH_DESCRIPTOR);
    d->set(graph, ATTR_OPERATIONGRAPH_HANDLE, TYPE_HANDLE, 1, &handle, "operation graph handle");
    d->set(graph, ATTR_OPERATIONGRAPH_OPS, TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(ops.size()), ops.data(),
           "operation graph ops");
    d->finalize(graph, "operation graph (cuDNN does not support this pattern)");

    // Heuristics (mode A, then the fallback list); the rank-th configuration of
    // the wanted kind (runtime-compiled or not) that finalises is the plan.
    int seen = 0;
    std::string notes;
    std::vector<int64_t> from_mode_a;  // engines mode A offered: the fallback list repeats some
    const bool tracing = trace_ && trace_->enabled();
    auto traced = [&](const char *name, int64_t t0, const std::string &args) {
        if (tracing) trace_->complete(name, "cudnn", t0, trace_->now_us() - t0, args);
    };
    for (int heur_mode : {HEUR_MODE_A, HEUR_MODE_FALLBACK}) {
        const int64_t h0 = tracing ? trace_->now_us() : 0;
        Desc heur = d->make(ENGINEHEUR_DESCRIPTOR);
        d->set(heur, ATTR_ENGINEHEUR_OPERATION_GRAPH, TYPE_BACKEND_DESCRIPTOR, 1, &graph, "heuristics graph");
        d->set(heur, ATTR_ENGINEHEUR_MODE, TYPE_HEUR_MODE, 1, &heur_mode, "heuristics mode");
        if (a.cudnnBackendFinalize(heur) != STATUS_SUCCESS) continue;
        int64_t count = 0;
        if (a.cudnnBackendGetAttribute(heur, ATTR_ENGINEHEUR_RESULTS, TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr) !=
                STATUS_SUCCESS || count <= 0)
            continue;
        count = std::min<int64_t>(count, 32);
        std::vector<Desc> cfgs;
        for (int64_t i = 0; i < count; ++i) cfgs.push_back(d->make(ENGINECFG_DESCRIPTOR));
        int64_t got = 0;
        if (a.cudnnBackendGetAttribute(heur, ATTR_ENGINEHEUR_RESULTS, TYPE_BACKEND_DESCRIPTOR, count, &got,
                                       cfgs.data()) != STATUS_SUCCESS)
            continue;
        traced("cudnn heuristics", h0,
               std::string("\"mode\":\"") + (heur_mode == HEUR_MODE_A ? "A" : "fallback") +
                   "\",\"configs\":" + std::to_string(got));
        for (int64_t i = 0; i < got; ++i) {
            Desc engine = d->make(ENGINE_DESCRIPTOR);
            int64_t one = 0;
            if (a.cudnnBackendGetAttribute(cfgs[size_t(i)], ATTR_ENGINECFG_ENGINE, TYPE_BACKEND_DESCRIPTOR, 1, &one,
                                           &engine) != STATUS_SUCCESS)
                continue;
            int behavior[16] = {0};
            int64_t nb = 0;
            bool is_rtc = false;
            if (a.cudnnBackendGetAttribute(engine, ATTR_ENGINE_BEHAVIOR_NOTE, TYPE_BEHAVIOR_NOTE, 16, &nb, behavior) ==
                STATUS_SUCCESS)
                for (int64_t j = 0; j < nb && j < 16; ++j) is_rtc = is_rtc || behavior[j] == BEHAVIOR_NOTE_RUNTIME_COMPILATION;
            if (is_rtc != rtc) continue;
            int64_t index = -1;
            a.cudnnBackendGetAttribute(engine, ATTR_ENGINE_GLOBAL_INDEX, TYPE_INT64, 1, &one, &index);
            if (heur_mode == HEUR_MODE_A) {
                from_mode_a.push_back(index);
            } else if (std::find(from_mode_a.begin(), from_mode_a.end(), index) != from_mode_a.end()) {
                continue;  // already a candidate (at its mode-A rank)
            }
            Desc plan = d->make(EXECUTION_PLAN_DESCRIPTOR);
            d->set(plan, ATTR_EXECUTION_PLAN_HANDLE, TYPE_HANDLE, 1, &handle, "plan handle");
            Desc cfg = cfgs[size_t(i)];
            d->set(plan, ATTR_EXECUTION_PLAN_ENGINE_CONFIG, TYPE_BACKEND_DESCRIPTOR, 1, &cfg, "plan engine config");
            const int64_t f0 = tracing ? trace_->now_us() : 0;
            Status fs = a.cudnnBackendFinalize(plan);
            traced("cudnn finalize", f0,
                   "\"engine\":" + std::to_string(index) + ",\"ok\":" + (fs == STATUS_SUCCESS ? "true" : "false") +
                       ",\"runtime_compiled\":" + (is_rtc ? "true" : "false"));
            if (fs != STATUS_SUCCESS) {
                if (notes.size() < 400) notes += " engine " + std::to_string(index) + ": " + a.message(fs, "finalize") + ";";
                continue;
            }
            if (seen++ < rank) continue;
            int64_t ws = 0;
            a.cudnnBackendGetAttribute(plan, ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, TYPE_INT64, 1, &one, &ws);
            auto out = std::make_shared<GraphPlan>(*this, std::move(d), plan, ws, p.has_bias, p.has_residual, key.str());
            out->what = "engine " + std::to_string(index) + (is_rtc ? " (runtime-compiled)" : "") + ", workspace " +
                        std::to_string(ws) + " B";
            first_run(*out, p, handle, std::to_string(index));
            return out;
        }
    }
    fail(PASK_ERROR_LOAD_FAILED, "cuDNN has no " + std::string(rtc ? "runtime-compiled" : "precompiled") +
                                     " engine configuration #" + std::to_string(rank) + " for " + p.str() +
                                     (notes.empty() ? std::string() : ":" + notes));
}

}  // namespace pask::cudnn

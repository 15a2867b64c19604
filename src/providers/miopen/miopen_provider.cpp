#include "miopen_provider.hpp"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <unordered_map>

#include "../../core/error.hpp"
#include "../../core/trace.hpp"

namespace pask::miopen {

bool miopen_has_activation(pask_activation_t act) {
    return act == PASK_ACTIVATION_NONE || act == PASK_ACTIVATION_RELU || act == PASK_ACTIVATION_RELU6 ||
           act == PASK_ACTIVATION_SIGMOID;
}

namespace {

std::atomic<uint64_t> g_next_provider{1};
// Handles this thread created, per provider (a MIOpen handle serves one thread).
thread_local std::unordered_map<uint64_t, Handle> t_handles;

int data_type(pask_dtype_t t) {
    return t == PASK_DTYPE_FLOAT16 ? DATA_HALF : t == PASK_DTYPE_BFLOAT16 ? DATA_BFLOAT16 : DATA_FLOAT;
}

void check(const Api &a, Status s, const char *what) {
    if (s != STATUS_SUCCESS)
        fail(s == STATUS_ALLOC_FAILED ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_LOAD_FAILED, a.message(s, what));
}

// Owns the MIOpen descriptors of one code object (destroyed with it).
class Descs {
public:
    explicit Descs(const Api &a) : a_(a) {}
    ~Descs() {
        if (act_) a_.miopenDestroyActivationDescriptor(act_);
        if (pool_) a_.miopenDestroyPoolingDescriptor(pool_);
        if (conv_) a_.miopenDestroyConvolutionDescriptor(conv_);
        for (auto it = tensors_.rbegin(); it != tensors_.rend(); ++it) a_.miopenDestroyTensorDescriptor(*it);
    }
    Descs(const Descs &) = delete;
    Descs &operator=(const Descs &) = delete;

    // An NCHW-strided 4-D tensor (the only layout the MIOpen solvers accept).
    TensorDesc tensor(int dt, int64_t n, int64_t c, int64_t h, int64_t w, const char *what) {
        TensorDesc t = nullptr;
        check(a_, a_.miopenCreateTensorDescriptor(&t), "miopenCreateTensorDescriptor");
        tensors_.push_back(t);
        check(a_, a_.miopenSet4dTensorDescriptorEx(t, dt, int(n), int(c), int(h), int(w), int(c * h * w), int(h * w),
                                                   int(w), 1),
              what);
        return t;
    }
    ConvDesc conv(const Problem &p) {
        check(a_, a_.miopenCreateConvolutionDescriptor(&conv_), "miopenCreateConvolutionDescriptor");
        check(a_, a_.miopenInitConvolutionDescriptor(conv_, CONVOLUTION, int(p.pad_pre[0]), int(p.pad_pre[1]),
                                                     int(p.stride[0]), int(p.stride[1]), int(p.dilation[0]),
                                                     int(p.dilation[1])),
              "miopenInitConvolutionDescriptor");
        if (p.groups > 1)
            check(a_, a_.miopenSetConvolutionGroupCount(conv_, int(p.groups)), "miopenSetConvolutionGroupCount");
        return conv_;
    }
    PoolDesc pool(const Problem &p) {
        check(a_, a_.miopenCreatePoolingDescriptor(&pool_), "miopenCreatePoolingDescriptor");
        const int mode = p.pool_mode == PASK_POOL_MAX ? POOLING_MAX
                         : p.count_include_pad        ? POOLING_AVERAGE_INCLUSIVE
                                                      : POOLING_AVERAGE;
        check(a_, a_.miopenSet2dPoolingDescriptor(pool_, mode, int(p.kh), int(p.kw), int(p.pad_pre[0]),
                                                  int(p.pad_pre[1]), int(p.stride[0]), int(p.stride[1])),
              "miopenSet2dPoolingDescriptor");
        return pool_;
    }
    ActivDesc activation(pask_activation_t act) {
        check(a_, a_.miopenCreateActivationDescriptor(&act_), "miopenCreateActivationDescriptor");
        // the solvers take only the activations MIOpen has (miopen_solvers.cpp)
        require(miopen_has_activation(act), PASK_ERROR_UNSUPPORTED,
                "MIOpen has no activation mode for activation " + std::to_string(int(act)));
        if (act == PASK_ACTIVATION_RELU6)
            check(a_, a_.miopenSetActivationDescriptor(act_, ACTIVATION_CLIPPEDRELU, 6.0, 0.0, 1.0),
                  "miopenSetActivationDescriptor");
        else if (act == PASK_ACTIVATION_SIGMOID)
            check(a_, a_.miopenSetActivationDescriptor(act_, ACTIVATION_LOGISTIC, 0.0, 0.0, 1.0),
                  "miopenSetActivationDescriptor");
        else
            check(a_, a_.miopenSetActivationDescriptor(act_, ACTIVATION_RELU, 0.0, 0.0, 1.0),
                  "miopenSetActivationDescriptor");
        return act_;
    }

private:
    const Api &a_;
    std::vector<TensorDesc> tensors_;
    ConvDesc conv_ = nullptr;
    PoolDesc pool_ = nullptr;
    ActivDesc act_ = nullptr;
};

Problem parse_key(const KernelKey &key, int *rank) {
    // constants: "sol=<rank>,p=<Problem fields>"
    std::map<std::string, int64_t> v;
    Problem p = parse_problem_constants(key, &v);
    require(v.count("sol") && v["sol"] >= 0, PASK_ERROR_LOAD_FAILED, "malformed MIOpen kernel key " + key.str());
    *rank = static_cast<int>(v["sol"]);
    return p;
}

class ConvPlan final : public Plan {
public:
    ConvPlan(MiopenProvider &prov, std::unique_ptr<Descs> descs, TensorDesc x, TensorDesc w, TensorDesc y,
             TensorDesc bias, ConvDesc conv, ActivDesc act, bool residual, uint64_t solution, size_t workspace,
             std::string origin)
        : Plan(std::move(origin)), prov_(prov), descs_(std::move(descs)), x_(x), w_(w), y_(y), bias_(bias),
          conv_(conv), act_(act), residual_(residual), solution_(solution), workspace_(workspace) {}

    void execute(const OpArgs &a) const override {
        const Api &api = prov_.api();
        HipBackend &b = prov_.backend();
        HipBackend::Scope scope(b);
        void *ws = b.alloc_async(workspace_);  // throws PASK_ERROR_OUT_OF_MEMORY
        const float one = 1.0f, zero = 0.0f;
        Status s = STATUS_SUCCESS;
        const char *what = "miopenSetStream";
        {
            std::lock_guard<std::mutex> lock(prov_.exec_mu());
            Handle h = nullptr;
            try {
                h = prov_.exec_handle();
            } catch (...) {
                b.free_async(ws);
                throw;
            }
            s = api.miopenSetStream(h, b.current_stream());
            if (s == STATUS_SUCCESS) {
                what = "miopenConvolutionForwardImmediate";
                s = api.miopenConvolutionForwardImmediate(h, w_, a.w, x_, a.x, conv_, y_, a.y, ws, workspace_,
                                                          solution_);
            }
            // the epilogue, in place on y: act(conv + bias + residual)
            if (s == STATUS_SUCCESS && bias_) {
                what = "miopenConvolutionForwardBias";
                s = api.miopenConvolutionForwardBias(h, &one, bias_, a.bias, &zero, y_, a.y);
            }
            if (s == STATUS_SUCCESS && residual_) {
                what = "miopenOpTensor";
                s = api.miopenOpTensor(h, TENSOR_OP_ADD, &one, y_, a.y, &one, y_, a.residual, &zero, y_, a.y);
            }
            if (s == STATUS_SUCCESS && act_) {
                what = "miopenActivationForward";
                s = api.miopenActivationForward(h, act_, &one, y_, a.y, &zero, y_, a.y);
            }
        }
        b.free_async(ws);
        if (s != STATUS_SUCCESS)
            fail(s == STATUS_ALLOC_FAILED ? PASK_ERROR_OUT_OF_MEMORY : PASK_ERROR_INTERNAL, api.message(s, what));
    }

private:
    MiopenProvider &prov_;
    std::unique_ptr<Descs> descs_;
    TensorDesc x_, w_, y_, bias_;
    ConvDesc conv_;
    ActivDesc act_;
    bool residual_;
    uint64_t solution_;
    size_t workspace_;
};

class PoolPlan final : public Plan {
public:
    PoolPlan(MiopenProvider &prov, std::unique_ptr<Descs> descs, TensorDesc x, TensorDesc y, PoolDesc pool,
             std::string origin)
        : Plan(std::move(origin)), prov_(prov), descs_(std::move(descs)), x_(x), y_(y), pool_(pool) {}

    void execute(const OpArgs &a) const override {
        const Api &api = prov_.api();
        HipBackend::Scope scope(prov_.backend());
        const float one = 1.0f, zero = 0.0f;
        Status s;
        const char *what = "miopenSetStream";
        {
            std::lock_guard<std::mutex> lock(prov_.exec_mu());
            Handle h = prov_.exec_handle();
            s = api.miopenSetStream(h, prov_.backend().current_stream());
            if (s == STATUS_SUCCESS) {
                what = "miopenPoolingForward";
                // forward only (no indices for a backward pass): no workspace
                s = api.miopenPoolingForward(h, pool_, &one, x_, a.x, &zero, y_, a.y, false, nullptr, 0);
            }
        }
        if (s != STATUS_SUCCESS) fail(PASK_ERROR_INTERNAL, api.message(s, what));
    }

private:
    MiopenProvider &prov_;
    std::unique_ptr<Descs> descs_;
    TensorDesc x_, y_;
    PoolDesc pool_;
};

}  // namespace

// ---- provider ---------------------------------------------------------------------

MiopenProvider::MiopenProvider(HipBackend &backend, std::string library, Trace *trace)
    : backend_(backend), library_(std::move(library)), trace_(trace), id_(g_next_provider++) {}

MiopenProvider::~MiopenProvider() {
    if (!api_) return;
    try {
        HipBackend::Scope scope(backend_);
        std::lock_guard<std::mutex> lock(handles_mu_);
        for (Handle h : build_handles_) api_->miopenDestroy(h);
        if (exec_handle_) api_->miopenDestroy(exec_handle_);
    } catch (...) {  // the device is gone: nothing left to release
    }
    // Handles of threads that outlive this provider are forgotten with it.
}

bool MiopenProvider::available() const {
    std::call_once(open_once_, [this] { api_ = Api::get(library_, &why_); });
    return api_ != nullptr;
}

std::string MiopenProvider::unavailable_reason() const {
    available();
    return why_;
}

void MiopenProvider::prepare() {
    if (!available()) return;
    const int64_t t0 = trace_ ? trace_->now_us() : 0;
    try {
        exec_handle();
    } catch (const Error &) {
        // reported again to the call that needs the handle
    }
    if (trace_ && trace_->enabled())
        trace_->complete("MIOpen handle", "load", t0, trace_->now_us() - t0, "\"library\":\"" + api_->path + "\"");
}

Handle MiopenProvider::exec_handle() {
    std::call_once(exec_once_, [this] {
        HipBackend::Scope scope(backend_);
        Handle h = nullptr;
        Status s = api_->miopenCreate(&h);
        if (s != STATUS_SUCCESS) exec_error_ = api_->message(s, "miopenCreate");
        else exec_handle_ = h;
    });
    if (!exec_handle_) fail(PASK_ERROR_BACKEND_UNAVAILABLE, exec_error_);
    return exec_handle_;
}

Handle MiopenProvider::handle_for_this_thread() {
    auto it = t_handles.find(id_);
    if (it != t_handles.end()) return it->second;
    Handle h = nullptr;
    check(*api_, api_->miopenCreate(&h), "miopenCreate");
    {
        std::lock_guard<std::mutex> lock(handles_mu_);
        build_handles_.push_back(h);
    }
    t_handles[id_] = h;
    return h;
}

KernelKey MiopenProvider::key_for(const Problem &p, int rank, const std::string &target) {
    return KernelKey{"miopen", "hip", op_name(p.op), "solution", target,
                     "sol=" + std::to_string(rank) + "," + problem_constants(p)};
}

std::shared_ptr<CodeObject> MiopenProvider::build(const KernelKey &key) {
    if (!available()) fail(PASK_ERROR_LOAD_FAILED, why_);
    int rank = 0;
    const Problem p = parse_key(key, &rank);
    HipBackend::Scope scope(backend_);
    // Solutions are found and compiled on this thread's handle, so building
    // never contends with the calls running on the execution handle. MIOpen
    // keeps what CompileSolution built in its kernel cache, where the
    // execution handle's first Immediate call finds it.
    exec_handle();  // the library's one-time set-up, if prepare() has not run
    Handle handle = handle_for_this_thread();
    const Api &a = *api_;
    const int dt = data_type(p.dtype);
    auto d = std::make_unique<Descs>(a);

    if (p.op == PASK_OP_POOL2D) {
        require(rank == 0, PASK_ERROR_LOAD_FAILED, "MIOpen pooling has one configuration");
        TensorDesc x = d->tensor(dt, p.n, p.c, p.h, p.w, "miopenSet4dTensorDescriptorEx(x)");
        TensorDesc y = d->tensor(dt, p.n, p.c, p.oh, p.ow, "miopenSet4dTensorDescriptorEx(y)");
        PoolDesc pool = d->pool(p);
        auto plan = std::make_shared<PoolPlan>(*this, std::move(d), x, y, pool, key.str());
        plan->what = "miopenPoolingForward";
        return plan;
    }
    require(p.op == PASK_OP_CONV2D, PASK_ERROR_LOAD_FAILED, "MIOpen provider: no " + std::string(op_name(p.op)));
    const int64_t cg = p.c / p.groups;
    TensorDesc x = d->tensor(dt, p.n, p.c, p.h, p.w, "miopenSet4dTensorDescriptorEx(x)");
    TensorDesc w = d->tensor(dt, p.o, cg, p.kh, p.kw, "miopenSet4dTensorDescriptorEx(w)");
    TensorDesc y = d->tensor(dt, p.n, p.o, p.oh, p.ow, "miopenSet4dTensorDescriptorEx(y)");
    TensorDesc bias = p.has_bias ? d->tensor(dt, 1, p.o, 1, 1, "miopenSet4dTensorDescriptorEx(bias)") : nullptr;
    ConvDesc conv = d->conv(p);
    ActivDesc act = p.activation != PASK_ACTIVATION_NONE ? d->activation(p.activation) : nullptr;

    size_t count = 0;
    check(a, a.miopenConvolutionForwardGetSolutionCount(handle, w, x, conv, y, &count),
          "miopenConvolutionForwardGetSolutionCount");
    require(count > 0, PASK_ERROR_LOAD_FAILED, "MIOpen has no convolution solution for " + p.str());
    std::vector<ConvSolution> sols(std::min<size_t>(count, 64));
    size_t got = 0;
    check(a, a.miopenConvolutionForwardGetSolution(handle, w, x, conv, y, sols.size(), &got, sols.data()),
          "miopenConvolutionForwardGetSolution");
    sols.resize(std::min(got, sols.size()));
    // MIOpen lists solutions by expected time; keep that order (stable for ties).
    std::stable_sort(sols.begin(), sols.end(), [](const ConvSolution &l, const ConvSolution &r) { return l.time < r.time; });
    require(rank < static_cast<int>(sols.size()), PASK_ERROR_LOAD_FAILED,
            "MIOpen lists " + std::to_string(sols.size()) + " solution(s) for " + p.str() + ", no solution #" +
                std::to_string(rank));
    const ConvSolution &sol = sols[static_cast<size_t>(rank)];
    check(a, a.miopenConvolutionForwardCompileSolution(handle, w, x, conv, y, sol.solution_id),
          "miopenConvolutionForwardCompileSolution");
    size_t workspace = 0;
    check(a, a.miopenConvolutionForwardGetSolutionWorkspaceSize(handle, w, x, conv, y, sol.solution_id, &workspace),
          "miopenConvolutionForwardGetSolutionWorkspaceSize");
    auto plan = std::make_shared<ConvPlan>(*this, std::move(d), x, w, y, bias, conv, act, p.has_residual,
                                           sol.solution_id, workspace, key.str());
    plan->what = "solution " + std::to_string(sol.solution_id) + " (algorithm " + std::to_string(sol.algorithm) +
                 "), workspace " + std::to_string(workspace) + " B";
    return plan;
}

}  // namespace pask::miopen

#include "loader.hpp"

#include <algorithm>
#include <system_error>

#include "error.hpp"

namespace pask {

Loader::Loader(Backend &backend, const KernelStore &store, int threads, Hooks hooks, int debug_delay_ms,
               bool quick_lane)
    : backend_(backend), store_(store), hooks_(std::move(hooks)), debug_delay_ms_(debug_delay_ms) {
    const int all = threads + (quick_lane && threads > 0 ? 1 : 0);
    try {
        for (int i = 0; i < threads; ++i) workers_.emplace_back([this, i] { worker_main(i, false); });
        if (all > threads) lane_ = std::thread([this, threads] { worker_main(threads, true); });
    } catch (const std::system_error &e) {  // no more threads: stop those started, report
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        work_cv_.notify_all();
        for (auto &w : workers_) w.join();
        fail(PASK_ERROR_OUT_OF_MEMORY, std::string("cannot start loader threads: ") + e.what());
    }
    // Every worker has named itself (its trace row) before the context is handed out.
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [&] { return started_ == all; });
}

Loader::~Loader() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    for (auto &w : workers_) w.join();
    if (lane_.joinable()) lane_.join();
    // Queued requests that never ran: resolve them so no waiter hangs.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto &[id, job] : jobs_)
        if (!job->running)
            job->promise.set_exception(std::make_exception_ptr(Error(PASK_ERROR_LOAD_FAILED, "context destroyed")));
    jobs_.clear();
}

Provider *Loader::provider_for(const KernelKey &key) const {
    for (Provider *p : providers_)
        if (key.provider == p->name()) return p;
    return nullptr;
}

bool Loader::available(const KernelKey &key) const {
    if (Provider *p = provider_for(key)) return p->available();
    return store_.provided(key) || store_.find(key).has_value() || backend_.can_compile();
}

void Loader::run_first(std::function<void()> task) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (!stop_ && !workers_.empty()) {
            tasks_.push_back(std::move(task));
            work_cv_.notify_all();  // the quick lane does not take tasks: wake a worker too
            return;
        }
    }
    task();
}

void Loader::request(const KernelKey &key, const Bucket &bucket, int64_t priority) {
    const std::string id = key.str();
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_ || workers_.empty()) return;
        auto it = jobs_.find(id);
        if (it != jobs_.end()) {
            auto &job = it->second;
            if (priority < job->priority) job->priority = priority;
            bool known = false;
            for (const auto &b : job->buckets) known = known || b == bucket;
            if (!known) job->buckets.push_back(bucket);
            return;
        }
        auto job = std::make_shared<Job>();
        job->key = key;
        job->buckets.push_back(bucket);
        job->priority = priority;
        job->order = order_++;
        job->quick = lane_.joinable() && prebuilt(key);  // a lookup of a remembered folder listing
        job->future = job->promise.get_future().share();
        jobs_.emplace(id, std::move(job));
    }
    work_cv_.notify_all();  // the quick lane may be the only thread that can take it
}

KernelPtr Loader::load_blocking(const KernelKey &key, const Bucket &bucket, bool *waited) {
    const std::string id = key.str();
    std::shared_ptr<Job> job;
    bool mine = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = jobs_.find(id);
        if (it != jobs_.end()) {
            job = it->second;
            bool known = false;
            for (const auto &b : job->buckets) known = known || b == bucket;
            if (!known) job->buckets.push_back(bucket);
            if (!job->running) {  // queued: take it over
                job->running = true;
                job->started = std::chrono::steady_clock::now();
                mine = true;
            }
        } else {
            job = std::make_shared<Job>();
            job->key = key;
            job->buckets.push_back(bucket);
            job->priority = INT64_MIN;
            job->order = order_++;
            job->running = true;
            job->started = std::chrono::steady_clock::now();
            job->future = job->promise.get_future().share();
            jobs_.emplace(id, job);
            mine = true;
        }
    }
    if (waited) *waited = !mine;
    if (mine) execute(job);
    return job->future.get();  // rethrows the loader's pask::Error
}

bool Loader::running(const KernelKey &key, double *elapsed_ms) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(key.str());
    if (it == jobs_.end() || !it->second->running) return false;
    if (elapsed_ms)
        *elapsed_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - it->second->started).count();
    return true;
}

bool Loader::queued_or_running(const KernelKey &key) const {
    std::lock_guard<std::mutex> lock(mu_);
    return jobs_.count(key.str()) != 0;
}

bool Loader::wait_idle(int64_t timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    // clamp: a huge timeout would overflow the clock arithmetic
    const int64_t capped = std::min<int64_t>(timeout_ms, int64_t(365) * 24 * 3600 * 1000);
    return idle_cv_.wait_for(lock, std::chrono::milliseconds(capped),
                             [&] { return jobs_.empty() && tasks_.empty() && tasks_running_ == 0; });
}

std::shared_ptr<Loader::Job> Loader::next_job(bool quick) const {
    std::shared_ptr<Job> job;
    for (auto &[id, j] : jobs_)
        if (!j->running && (!quick || j->quick) &&
            (!job || j->priority < job->priority || (j->priority == job->priority && j->order < job->order)))
            job = j;
    return job;
}

void Loader::worker_main(int index, bool quick) {
    if (hooks_.thread_started) hooks_.thread_started(index);
    {
        std::lock_guard<std::mutex> lock(mu_);
        ++started_;
    }
    idle_cv_.notify_all();
    for (;;) {
        std::shared_ptr<Job> job;
        {
            std::unique_lock<std::mutex> lock(mu_);
            work_cv_.wait(lock, [&] { return stop_ || (!quick && !tasks_.empty()) || (job = next_job(quick)); });
            if (stop_) return;
            if (!quick && !tasks_.empty()) {
                auto task = std::move(tasks_.front());
                tasks_.erase(tasks_.begin());
                ++tasks_running_;
                lock.unlock();
                try {
                    task();
                } catch (...) {
                    // set-up tasks report through their own state; a failure
                    // surfaces when a load needs what they prepare
                }
                lock.lock();
                --tasks_running_;
                if (jobs_.empty() && tasks_.empty() && tasks_running_ == 0) idle_cv_.notify_all();
                continue;
            }
            job->running = true;
            job->started = std::chrono::steady_clock::now();
        }
        execute(job);
    }
}

void Loader::execute(const std::shared_ptr<Job> &job) {
    const int64_t t0 = hooks_.now_us ? hooks_.now_us() : 0;
    auto c0 = std::chrono::steady_clock::now();
    KernelPtr kernel;
    std::string error;
    pask_status_t status = PASK_ERROR_LOAD_FAILED;
    try {
        kernel = load_now(job->key);
    } catch (const Error &e) {
        error = e.what();
        if (e.status() == PASK_ERROR_OUT_OF_MEMORY) status = PASK_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        error = std::string("unexpected error: ") + e.what();
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
    if (hooks_.traced) {
        const std::string why = kernel ? std::string() : error.empty() ? std::string("the load gave no kernel") : error;
        hooks_.traced(job->key, t0, static_cast<int64_t>(ms * 1000), why);
    }
    std::vector<Bucket> buckets;
    {
        std::lock_guard<std::mutex> lock(mu_);
        buckets = job->buckets;
    }
    if (kernel) {
        if (hooks_.loaded) hooks_.loaded(kernel, buckets, ms);
        job->promise.set_value(kernel);
    } else {
        if (hooks_.failed) hooks_.failed(job->key, error, status);
        job->promise.set_exception(std::make_exception_ptr(Error(status, error)));
    }
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.erase(job->key.str());
    if (jobs_.empty()) idle_cv_.notify_all();
}

std::shared_ptr<CodeObject> Loader::object_for(const KernelKey &key, const std::string &path) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find(key.object_id());
        if (it != objects_.end())
            if (auto obj = it->second.lock()) return obj;
    }
    auto obj = backend_.load_code_object(path);
    std::lock_guard<std::mutex> lock(mu_);
    objects_[key.object_id()] = obj;
    return obj;
}

KernelPtr Loader::load_now(const KernelKey &key) {
    if (debug_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(debug_delay_ms_));
    auto t0 = std::chrono::steady_clock::now();
    std::shared_ptr<CodeObject> obj;
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = objects_.find(key.object_id());
        if (it != objects_.end()) obj = it->second.lock();
    }
    if (!obj) {
        if (Provider *p = provider_for(key)) {
            obj = p->build(key);
            std::lock_guard<std::mutex> lock(mu_);
            objects_[key.object_id()] = obj;
        } else if (auto bytes = store_.provided(key)) {
            // handed in by the application (a bundle), checked when it was added
            obj = backend_.load_code_object_bytes(*bytes, "provided " + key.object_id());
            std::lock_guard<std::mutex> lock(mu_);
            objects_[key.object_id()] = obj;
        } else if (auto path = store_.find(key)) {
            obj = object_for(key, *path);
        } else if (backend_.can_compile()) {
            // KernelStore (user cache) -> compile if absent -> load
            const std::string material = backend_.compile_material(key);
            bool rejected = false;
            auto bytes = store_.cache_get(material, &rejected);
            if (hooks_.cache_lookup) hooks_.cache_lookup(key, bytes.has_value(), rejected);
            if (!bytes) {
                auto c0 = std::chrono::steady_clock::now();
                bytes = backend_.compile(key);
                if (hooks_.compiled)
                    hooks_.compiled(key, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count());
                store_.cache_put(material, *bytes);
            }
            obj = backend_.load_code_object_bytes(*bytes, key.str());
            std::lock_guard<std::mutex> lock(mu_);
            objects_[key.object_id()] = obj;
        } else {
            fail(PASK_ERROR_LOAD_FAILED, "kernel code object " + store_.file_name(key) + " not found in " +
                                             store_.prebuilt_dir());
        }
    }
    void *entry = obj->symbol(key.entry);
    if (!entry) fail(PASK_ERROR_LOAD_FAILED, "entry point " + key.entry + " missing from " + obj->path());
    auto kernel = std::make_shared<Kernel>();
    kernel->key = key;
    kernel->object = std::move(obj);
    kernel->entry = entry;
    kernel->load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return kernel;
}

}  // namespace pask

// serve::Multiplexed's type-erased LRU and the process-wide registry the replica reports from.

#include <serve/multiplex.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "sdk/builtin_metrics.h"
#include "sdk/host.h"

namespace serve {
namespace detail {

struct ModelLoad {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::shared_ptr<void> model;
  std::exception_ptr error;
  struct Waiter {
    std::coroutine_handle<> h;
    std::shared_ptr<sdk::Resumer> resumer;  // null: resume inline
  };
  std::vector<Waiter> waiters;
};

struct ModelCache::State {
  mutable std::mutex mu;
  int max_models = -1;
  Unload unload;
  using Lru = std::list<std::pair<std::string, std::shared_ptr<void>>>;  // LRU first
  Lru lru;
  std::unordered_map<std::string, Lru::iterator> index;
  std::map<std::string, std::shared_ptr<ModelLoad>> loading;
  int64_t loads = 0;
  int64_t unloads = 0;
};

namespace {

struct Registry {
  std::mutex mu;
  std::set<ModelCache::State*> caches;
  std::shared_ptr<std::function<void()>> listener;
};
Registry& GetRegistry() {
  static auto* r = new Registry;  // never destroyed: caches may die during static teardown
  return *r;
}

void NotifyChanged() {
  std::shared_ptr<std::function<void()>> listener;
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    listener = r.listener;
  }
  if (listener) (*listener)();
}

std::shared_ptr<sdk::Resumer> CurrentResumer() {
  const sdk::RequestContext* ctx = sdk::CurrentRequestContext();
  if (ctx == nullptr || ctx->resumer == nullptr) return nullptr;
  return ctx->resumer->shared_from_this();
}

using Evicted = std::vector<std::pair<std::string, std::shared_ptr<void>>>;

/// Pops least recently used models (never `keep`) while the cache holds more than `limit`
/// models, loading ones included. Called under the state's lock.
void EvictOver(ModelCache::State& s, size_t limit, const std::string* keep, Evicted& out) {
  if (s.max_models < 0) return;
  while (s.lru.size() + s.loading.size() > limit && !s.lru.empty()) {
    auto victim = s.lru.begin();
    if (keep != nullptr && victim->first == *keep) {
      if (s.lru.size() == 1) return;
      victim = std::next(victim);
    }
    s.index.erase(victim->first);
    out.emplace_back(std::move(*victim));
    s.lru.erase(victim);
    ++s.unloads;
  }
}

/// Runs the unload hook of each evicted model, outside the lock; the cache's references drop
/// with `evicted`.
void RunUnloads(const ModelCache::Unload& hook, Evicted& evicted) {
  for (auto& [id, model] : evicted) {
    spdlog::info("Unloading multiplexed model '{}'.", id);
    auto started = std::chrono::steady_clock::now();
    struct Record {  // also when the hook throws
      const std::string& id;
      std::chrono::steady_clock::time_point started;
      ~Record() {
        sdk::builtin::MultiplexUnloaded(
            id, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                          started)
                    .count());
      }
    } record{id, started};
    if (!hook) continue;
    try {
      hook(id, model);
    } catch (const std::exception& e) {
      spdlog::warn("The unload hook of model '{}' failed: {}", id, e.what());
    } catch (...) {
      spdlog::warn("The unload hook of model '{}' failed.", id);
    }
  }
  evicted.clear();
}

}  // namespace

ModelCache::ModelCache(int max_models, Unload unload) : state_(std::make_shared<State>()) {
  state_->max_models = max_models;
  state_->unload = std::move(unload);
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  r.caches.insert(state_.get());
}

ModelCache::~ModelCache() {
  bool had_models;
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    r.caches.erase(state_.get());
    std::lock_guard state_lock(state_->mu);
    had_models = !state_->lru.empty() || !state_->loading.empty();
  }
  if (had_models) NotifyChanged();
}

ModelCache::Ticket ModelCache::Acquire(const std::string& id) {
  if (id.empty()) {
    throw std::invalid_argument(
        "The multiplexed model ID must be a non-empty string (set the "
        "serve_multiplexed_model_id header or options().multiplexed_model_id).");
  }
  State& s = *state_;
  Ticket t;
  Evicted evicted;
  sdk::builtin::MultiplexGetModel();
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.index.find(id); it != s.index.end()) {
      s.lru.splice(s.lru.end(), s.lru, it->second);  // now the most recently used
      t.model = it->second->second;
      return t;
    }
    if (auto it = s.loading.find(id); it != s.loading.end()) {
      t.load = it->second;
      return t;
    }
    if (s.max_models > 0) EvictOver(s, static_cast<size_t>(s.max_models - 1), nullptr, evicted);
    t.load = std::make_shared<ModelLoad>();
    t.owner = true;
    s.loading.emplace(id, t.load);
    ++s.loads;
  }
  spdlog::info("Loading multiplexed model '{}'.", id);
  RunUnloads(s.unload, evicted);
  NotifyChanged();
  return t;
}

void ModelCache::Finish(const std::string& id, const std::shared_ptr<ModelLoad>& load,
                        std::shared_ptr<void> model, std::exception_ptr error) {
  State& s = *state_;
  Evicted evicted;
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.loading.find(id); it != s.loading.end() && it->second == load) {
      s.loading.erase(it);
    }
    if (!error) {
      s.lru.emplace_back(id, model);
      s.index[id] = std::prev(s.lru.end());
      if (s.max_models > 0) EvictOver(s, static_cast<size_t>(s.max_models), &id, evicted);
    }
    sdk::builtin::MultiplexNumModels(s.lru.size());
  }
  if (!error) {
    sdk::builtin::MultiplexLoaded(
        id, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                      load->started)
                .count());
  }
  RunUnloads(s.unload, evicted);
  NotifyChanged();
  std::vector<ModelLoad::Waiter> waiters;
  {
    std::lock_guard lock(load->mu);
    load->done = true;
    load->model = std::move(model);
    load->error = error;
    waiters = std::move(load->waiters);
    load->cv.notify_all();
  }
  for (auto& w : waiters) {
    if (w.resumer) {
      w.resumer->Resume(w.h);
    } else {
      w.h.resume();
    }
  }
}

bool ModelCache::LoadAwaiter::await_ready() const {
  std::lock_guard lock(load->mu);
  return load->done;
}

bool ModelCache::LoadAwaiter::await_suspend(std::coroutine_handle<> h) {
  std::shared_ptr<sdk::Resumer> resumer = CurrentResumer();
  std::lock_guard lock(load->mu);
  if (load->done) return false;
  load->waiters.push_back({h, std::move(resumer)});
  return true;
}

std::shared_ptr<void> ModelCache::LoadAwaiter::await_resume() const {
  std::lock_guard lock(load->mu);
  if (load->error) std::rethrow_exception(load->error);
  return load->model;
}

std::shared_ptr<void> ModelCache::Wait(const std::shared_ptr<ModelLoad>& load) {
  std::unique_lock lock(load->mu);
  load->cv.wait(lock, [&] { return load->done; });
  if (load->error) std::rethrow_exception(load->error);
  return load->model;
}

std::vector<std::string> ModelCache::LoadedIds() const {
  std::lock_guard lock(state_->mu);
  std::vector<std::string> ids;
  for (auto& [id, m] : state_->lru) ids.push_back(id);
  return ids;
}

std::vector<std::string> ModelCache::ReportedIds() const {
  std::vector<std::string> ids = LoadedIds();
  std::lock_guard lock(state_->mu);
  for (auto& [id, l] : state_->loading) ids.push_back(id);
  return ids;
}

int64_t ModelCache::num_loads() const {
  std::lock_guard lock(state_->mu);
  return state_->loads;
}

int64_t ModelCache::num_unloads() const {
  std::lock_guard lock(state_->mu);
  return state_->unloads;
}

}  // namespace detail

std::string get_multiplexed_model_id() {
  const sdk::RequestContext* ctx = sdk::CurrentRequestContext();
  return ctx == nullptr ? std::string() : ctx->multiplexed_model_id;
}

namespace sdk {

void SetMultiplexedModelsListener(std::function<void()> listener) {
  detail::Registry& r = detail::GetRegistry();
  std::lock_guard lock(r.mu);
  r.listener = listener ? std::make_shared<std::function<void()>>(std::move(listener)) : nullptr;
}

std::vector<std::string> MultiplexedModelIds() {
  detail::Registry& r = detail::GetRegistry();
  std::set<std::string> ids;
  std::lock_guard lock(r.mu);
  for (const detail::ModelCache::State* s : r.caches) {
    std::lock_guard state_lock(s->mu);
    for (auto& [id, m] : s->lru) ids.insert(id);
    for (auto& [id, l] : s->loading) ids.insert(id);
  }
  return {ids.begin(), ids.end()};
}

}  // namespace sdk
}  // namespace serve

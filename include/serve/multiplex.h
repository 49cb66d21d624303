#pragma once

// Model multiplexing (Ray Serve's @serve.multiplexed): one deployment serves many models,
// loading each on demand into a per-replica LRU cache keyed by model id. Routers send a request
// carrying a model id (HTTP header `serve_multiplexed_model_id`, handle
// options().multiplexed_model_id) to a replica that already holds that model.
//
//   struct Models {
//     serve::Multiplexed<Booster> models{
//         [](const std::string& id) { return std::make_shared<Booster>(LoadFile(id)); },
//         /*max_num_models_per_replica=*/2};
//     serve::Task<std::string> operator()(serve::HttpRequest r) {
//       std::shared_ptr<Booster> m = co_await models.get(serve::get_multiplexed_model_id());
//       co_return m->Predict(r.body);
//     }
//   };
//
// Contract:
// - A hit moves the model to the most recently used end. A miss loads it with the loader;
//   requests for the same id that arrive meanwhile wait for that one load (coroutines suspend
//   and resume on their replica's executor; get_sync blocks) and share its result or error.
//   A failed load is not cached: the next request loads again.
// - The cache holds at most max_num_models_per_replica models (−1: unlimited), counting
//   loading ones. Before a load, the least recently used loaded models are evicted; while only
//   loading models remain it may briefly exceed the limit and evicts once loads finish.
//   Evicting calls the unload hook (if any) and drops the cache's reference: the model's
//   destructor runs once requests still using it release their shared_ptr.
// - Empty model ids are rejected with std::invalid_argument.
// - Inside a replica, the union of every cache's loaded and loading ids is reported to the
//   controller (at most every 0.1 s, on change) and broadcast to routers.
// - Thread-safe. A Multiplexed object must outlive its get() calls; destroying it unloads
//   nothing (its models are released with it, without the unload hook).

#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <serve/task.h>
#include <serve/version.h>

namespace serve {

/// The multiplexed model id of the request being served on this thread ("" when it has none
/// or outside a request).
SERVE_EXPORT std::string get_multiplexed_model_id();

namespace detail {

struct ModelLoad;  // one load in flight, shared by the requests waiting for it

/// The type-erased LRU behind Multiplexed<Model>.
class SERVE_EXPORT ModelCache {
 public:
  using Unload = std::function<void(const std::string& id, const std::shared_ptr<void>& model)>;
  ModelCache(int max_models, Unload unload);
  ~ModelCache();
  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;

  /// What a get() found for one id: the model (a hit), or a load to wait for, or — when
  /// `owner` — a load the caller must perform and then hand to Finish().
  struct Ticket {
    std::shared_ptr<void> model;
    std::shared_ptr<ModelLoad> load;
    bool owner = false;
  };
  /// Looks `id` up; on a miss with no load in flight, evicts down to capacity and registers
  /// a load owned by the caller. Throws std::invalid_argument for an empty id.
  Ticket Acquire(const std::string& id);
  /// Ends the load of `id` (exactly once per owned ticket): `error` null caches `model`;
  /// otherwise the entry is dropped. Wakes every waiter.
  void Finish(const std::string& id, const std::shared_ptr<ModelLoad>& load,
              std::shared_ptr<void> model, std::exception_ptr error);

  /// Awaits a load: resumes on the awaiting request's executor (inline outside a replica).
  /// `load` must be kept alive by the awaiting coroutine (a named local, not the awaiter).
  struct LoadAwaiter {
    ModelLoad* load;
    bool await_ready() const;
    bool await_suspend(std::coroutine_handle<> h);
    std::shared_ptr<void> await_resume() const;
  };
  /// Blocks until `load` ends; returns its model or rethrows its error.
  static std::shared_ptr<void> Wait(const std::shared_ptr<ModelLoad>& load);

  /// Loaded ids, least recently used first (loading ones excluded).
  std::vector<std::string> LoadedIds() const;
  /// Loaded and loading ids (what the replica reports).
  std::vector<std::string> ReportedIds() const;
  /// Loads started / models evicted since construction.
  int64_t num_loads() const;
  int64_t num_unloads() const;

  struct State;  // defined in the implementation

 private:
  std::shared_ptr<State> state_;
};

}  // namespace detail

/// A per-replica LRU cache of models loaded by id. `Model` is any type held by shared_ptr.
template <class Model>
class Multiplexed {
 public:
  using Loader = std::function<Task<std::shared_ptr<Model>>(std::string model_id)>;
  using UnloadHook = std::function<void(const std::string& model_id, Model& model)>;

  /// `loader` is a callable `(const std::string& model_id)` returning
  /// std::shared_ptr<Model>, Model (moved into a shared_ptr) or a Task of either; it may throw.
  /// A coroutine loader runs on the executor of the request that started the load.
  /// `max_num_models_per_replica` > 0, or −1 for unlimited. `unload` runs on eviction, on the
  /// thread of the request whose load evicted it, before the cache drops its reference.
  template <class F>
  explicit Multiplexed(F loader, int max_num_models_per_replica = 3, UnloadHook unload = {})
      : loader_(Adapt(std::move(loader))),
        cache_(Validate(max_num_models_per_replica),
               unload ? detail::ModelCache::Unload(
                            [unload](const std::string& id, const std::shared_ptr<void>& m) {
                              unload(id, *static_cast<Model*>(m.get()));
                            })
                      : detail::ModelCache::Unload()) {}

  /// The model for `model_id`, loading it on a miss (see the contract above).
  Task<std::shared_ptr<Model>> get(std::string model_id) {
    detail::ModelCache::Ticket t = cache_.Acquire(model_id);
    if (t.model) co_return std::static_pointer_cast<Model>(std::move(t.model));
    if (!t.owner) {
      detail::ModelCache::LoadAwaiter waiting{t.load.get()};
      std::shared_ptr<void> loaded = co_await waiting;
      co_return std::static_pointer_cast<Model>(std::move(loaded));
    }
    std::shared_ptr<Model> model;
    std::exception_ptr error;
    try {
      model = co_await loader_(model_id);
      if (!model) throw std::runtime_error("the loader returned no model for '" + model_id + "'");
    } catch (...) {
      error = std::current_exception();
    }
    cache_.Finish(model_id, t.load, model, error);
    if (error) std::rethrow_exception(error);
    co_return model;
  }
  /// The model for the current request's multiplexed model id.
  Task<std::shared_ptr<Model>> get() { return get(get_multiplexed_model_id()); }

  /// Blocking form for synchronous handlers: loads on this thread (a coroutine loader runs to
  /// completion here) or waits for the load in flight.
  std::shared_ptr<Model> get_sync(const std::string& model_id) {
    detail::ModelCache::Ticket t = cache_.Acquire(model_id);
    if (t.model) return std::static_pointer_cast<Model>(std::move(t.model));
    if (!t.owner) return std::static_pointer_cast<Model>(detail::ModelCache::Wait(t.load));
    std::shared_ptr<Model> model;
    std::exception_ptr error;
    try {
      model = loader_(model_id).get();
      if (!model) throw std::runtime_error("the loader returned no model for '" + model_id + "'");
    } catch (...) {
      error = std::current_exception();
    }
    cache_.Finish(model_id, t.load, model, error);
    if (error) std::rethrow_exception(error);
    return model;
  }

  /// Loaded model ids, least recently used first.
  std::vector<std::string> model_ids() const { return cache_.LoadedIds(); }
  /// Loads started and models evicted so far.
  int64_t num_loads() const { return cache_.num_loads(); }
  int64_t num_unloads() const { return cache_.num_unloads(); }

 private:
  static int Validate(int n) {
    if (n != -1 && n <= 0) {
      throw std::invalid_argument("max_num_models_per_replica must be positive or -1, got " +
                                  std::to_string(n));
    }
    return n;
  }
  template <class R>
  static std::shared_ptr<Model> Wrap(R&& r) {
    if constexpr (std::is_convertible_v<R, std::shared_ptr<Model>>) {
      return std::forward<R>(r);
    } else {
      return std::make_shared<Model>(std::forward<R>(r));
    }
  }
  template <class F>
  static Loader Adapt(F f) {
    return [f = std::move(f)](std::string id) -> Task<std::shared_ptr<Model>> {
      using R = std::invoke_result_t<const F&, const std::string&>;
      if constexpr (IsTask<R>::value) {
        auto loaded = co_await f(id);
        co_return Wrap(std::move(loaded));
      } else {
        co_return Wrap(f(id));
      }
    };
  }

  Loader loader_;
  detail::ModelCache cache_;
};

}  // namespace serve

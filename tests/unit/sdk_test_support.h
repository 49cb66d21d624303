#pragma once

// Helpers of the SDK tests: a replica-like executor, and building an instance the way a
// replica does.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <stdexcept>
#include <mutex>
#include <thread>
#include <vector>

#include <serve/serve.h>

#include "sdk/host.h"

namespace serve::testing {

/// Builds the first deployment of `app` through the factory bind() registered, as a replica
/// would.
inline std::unique_ptr<serve::detail::Instance> MakeInstance(const serve::Application& app) {
  serve::Json graph = app.ToJson();
  const serve::Json& node = graph.at("deployments").at(0);
  serve::detail::Factory factory = serve::sdk::FindFactory(node.at("factory").get<std::string>());
  if (factory == nullptr) throw std::runtime_error("factory not registered");
  return factory(serve::detail::EncodeMsgpack(node.at("init_args")));
}

/// `threads` threads running posted functions in order; requests resume their coroutines on it.
class TestExecutor {
 public:
  explicit TestExecutor(int threads = 1) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~TestExecutor() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  /// The first thread (the only one by default).
  std::thread::id id() const { return threads_.front().get_id(); }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace serve::testing

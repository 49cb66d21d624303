#pragma once

// A worker node's membership in a cluster: registers with the head controller and heartbeats
// until stopped (spec §8.1). Runs its own thread.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "serve/v1/controller.pb.h"

namespace serve::node {

class Membership {
 public:
  struct Callbacks {
    /// Registered (first time and after every re-registration).
    std::function<void()> on_registered;
    /// The controller no longer knows this node (it restarted and replaced the node's replicas):
    /// called before registering again, to stop the processes it no longer tracks.
    std::function<void()> on_forgotten;
    /// The controller declared the node DEAD, or refused its cluster token: the agent stops.
    std::function<void(const std::string& reason)> on_dead;
  };
  /// Starts registering `request` with the controller at `controller_address`: retried every
  /// heartbeat period until it succeeds, then heartbeats every period.
  Membership(std::string controller_address, v1::RegisterNodeRequest request, Callbacks callbacks);
  ~Membership();

 private:
  void Run();
  bool Sleep(double seconds);  ///< false once stopping

  std::string controller_address_;
  v1::RegisterNodeRequest request_;
  Callbacks callbacks_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace serve::node

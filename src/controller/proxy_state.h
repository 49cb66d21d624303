#pragma once

// The HTTP proxies (spec §3.4, §8.1): one on this node, started through the agent, restarted
// on the port it had when it dies. Not thread-safe.

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "controller/actions.h"
#include "controller/context.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

struct ProxyInfo {
  int pid = 0;  ///< 0 until the agent or the proxy reports it
  std::string status = "STARTING";
  int http_port = 0;  ///< the bound port, once the proxy reported ready
  std::string log_file;
};

class ProxyStateManager {
 public:
  explicit ProxyStateManager(const ControllerContext& context);

  /// Starts this node's proxy (unless proxies are disabled), on the port the last one bound.
  /// The record is STARTING from now on, so a fast proxy's ready report is not overwritten.
  void Start(Actions& actions);
  void OnProcessStarted(const std::string& node_id, const absl::StatusOr<int>& pid);
  void OnReady(const v1::ProxyReady& msg);
  /// The proxy process `pid` on `node_id` exited; restarted unless `shutting_down`.
  void OnExit(const std::string& node_id, int pid, int exit_code, bool shutting_down,
              Actions& actions);

  const std::map<std::string, ProxyInfo>& proxies() const { return proxies_; }
  /// Restored from a checkpoint (status HEALTHY; dropped again by Recover when not alive).
  void Restore(const std::string& node_id, ProxyInfo proxy);
  void Clear() { proxies_.clear(); }

 private:
  const ControllerContext& context_;
  std::map<std::string, ProxyInfo> proxies_;  ///< by node id
  int last_port_ = 0;                         ///< a restarted proxy binds the same port
};

}  // namespace serve::controller

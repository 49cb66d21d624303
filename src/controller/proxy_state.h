#pragma once

// The HTTP proxies (spec §3.4, §8.1): one per targeted node, started through that node's agent
// and restarted on the port it had when it dies. The targets are decided by the control loop
// (the head always; with EveryNode also every alive, non-draining node with a replica). A proxy
// no longer targeted is DRAINING: it answers /-/healthz with 503 and exits by itself once it
// has had no request in flight for the minimum draining period (DRAINED: its record goes); a
// target again before that, it is HEALTHY again. A proxy that exits before it is ready is
// restarted with exponential backoff (capped); on the head, before any proxy of this controller
// was ever ready, a proxy that cannot bind its port, or that fails kMaxStartFailures times in a
// row, is not restarted: it stays UNHEALTHY with the reason as its message. Not thread-safe.

#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "controller/actions.h"
#include "controller/clock.h"
#include "controller/context.h"
#include "serve/v1/controller.pb.h"

namespace serve::controller {

struct ProxyInfo {
  int pid = 0;  ///< 0 until the agent or the proxy reports it (and while a restart waits)
  std::string status = "STARTING";  ///< STARTING | HEALTHY | UNHEALTHY | DRAINING
  int http_port = 0;  ///< the bound port, once the proxy reported ready
  std::string log_file;
  std::string message;  ///< why it is not HEALTHY; "" when it is
};

class ProxyStateManager {
 public:
  /// Restart delays: kRestartBaseS * 2^(n-1) for the n-th failure in a row, at most kRestartCapS.
  static constexpr double kRestartBaseS = 0.5;
  static constexpr double kRestartCapS = 10;
  static constexpr int kMaxStartFailures = 3;
  /// Exit code of a proxy that cannot bind its HTTP port; it writes one line naming the address
  /// and the reason to <session>/proxy_<node_id>.error first, and removes that file once it
  /// listens (see proxy/proxy.cc).
  static constexpr int kExitCannotListen = 73;

  ProxyStateManager(const ControllerContext& context, Clock& clock);

  /// Reconciles the proxies with `targets` (node id -> IP the proxy binds when http_host is
  /// not a wildcard; the head's entry is ignored, it binds http_host): starts missing ones and
  /// those whose restart delay passed, drains the ones no longer targeted and un-drains targets.
  /// Nothing while `shutting_down`. Returns whether a published state (draining) changed.
  bool Reconcile(const std::map<std::string, std::string>& targets, bool shutting_down,
                 Actions& actions);
  /// The agent started the proxy (`pid`), or could not (counted as a failed start).
  void OnProcessStarted(const std::string& node_id, const absl::StatusOr<int>& pid);
  void OnReady(const v1::ProxyReady& msg);
  /// The proxy process `pid` on `node_id` exited: a DRAINING one is DRAINED (gone), others are
  /// restarted (see above) unless `shutting_down`.
  void OnExit(const std::string& node_id, int pid, int exit_code, bool shutting_down,
              Actions& actions);
  /// `node_id` died or left: its proxy is gone with it.
  void OnNodeGone(const std::string& node_id);

  const std::map<std::string, ProxyInfo>& proxies() const { return proxies_; }
  /// Restored from a checkpoint (status HEALTHY; dropped again by Recover when not alive).
  void Restore(const std::string& node_id, ProxyInfo proxy);
  void Erase(const std::string& node_id);
  void Clear() {
    proxies_.clear();
    slots_.clear();
  }

 private:
  /// Restart bookkeeping of one node's proxy; kept while its ProxyInfo exists.
  struct Slot {
    std::string bind_ip;                ///< the node's IP (workers)
    int last_port = 0;                  ///< a restarted proxy binds the same port
    int failures = 0;                   ///< failed starts since the proxy was last ready
    std::optional<double> restart_at;   ///< when the waiting restart is due (Clock::Now)
  };
  /// Starts the proxy on `node_id`; its record is STARTING from now on, so a fast proxy's ready
  /// report is not overwritten.
  void Start(const std::string& node_id, Actions& actions);
  /// A start of the proxy on `node_id` failed with `reason`: schedule a restart or give up.
  void OnFailedStart(ProxyInfo& proxy, const std::string& node_id, const std::string& reason,
                     bool cannot_listen);
  bool IsHead(const std::string& node_id) const { return node_id == context_.options.node_id; }

  const ControllerContext& context_;
  Clock& clock_;
  std::map<std::string, ProxyInfo> proxies_;  ///< by node id
  std::map<std::string, Slot> slots_;         ///< by node id
  bool ever_healthy_ = false;                 ///< a proxy of this controller was ready once
  std::deque<int> exited_pids_;               ///< recent exits, so late start reports are ignored
};

}  // namespace serve::controller

#include "controller/proxy_state.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/util.h"

namespace serve::controller {
namespace {

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", s);
  return buf;
}

// "exited with code 1" / "was killed by signal 9 (Killed)".
std::string ExitText(int exit_code) {
  if (exit_code < 0) {
    return "was killed by signal " + std::to_string(-exit_code) + " (" +
           std::string(strsignal(-exit_code)) + ")";
  }
  return "exited with code " + std::to_string(exit_code);
}

}  // namespace

ProxyStateManager::ProxyStateManager(const ControllerContext& context, Clock& clock)
    : context_(context), clock_(clock) {}

namespace {
bool Wildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}
}  // namespace

void ProxyStateManager::Start(const std::string& node_id, Actions& actions) {
  const ControllerOptions& o = context_.options;
  Slot& slot = slots_[node_id];
  slot.restart_at.reset();
  proxies_[node_id] = ProxyInfo{};
  int port = slot.last_port > 0 ? slot.last_port : o.http_port;
  // Worker proxies bind their node's IP unless the configured host is a wildcard, so that
  // nodes sharing a machine (loopback aliases) do not collide on one address.
  std::string host = IsHead(node_id) || Wildcard(o.http_host) || slot.bind_ip.empty()
                         ? o.http_host
                         : slot.bind_ip;
  double timeout = o.request_timeout_s > 0
                       ? o.request_timeout_s
                       : EnvDouble("RAY_SERVE_REQUEST_PROCESSING_TIMEOUT_S",
                                   EnvDouble("SERVE_REQUEST_PROCESSING_TIMEOUT_S", 0));
  StartProxyAction a;
  a.node_id = node_id;
  v1::StartProcessRequest& req = a.request;
  req.set_tag(ProcessTag::Proxy().Encode());
  req.set_log_prefix("ProxyActor");
  req.set_binary("serve-proxy");
  for (const std::string& arg :
       {std::string("--controller-address"), context_.address, std::string("--node-id"),
        node_id, std::string("--http-host"), host, std::string("--http-port"),
        std::to_string(port), std::string("--session-dir"), o.session_dir,
        std::string("--keep-alive-timeout-s"), std::to_string(o.keep_alive_timeout_s),
        std::string("--request-timeout-s"), std::to_string(timeout > 0 ? timeout : -1),
        std::string("--min-draining-period-s"),
        std::to_string(EnvDouble("RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S", 30))}) {
    req.add_args(arg);
  }
  req.add_args("--grpc-port");
  req.add_args(std::to_string(o.grpc_port));
  for (const std::string& service : o.grpc_servicer_functions) {
    req.add_args("--grpc-servicer-functions");
    req.add_args(service);
  }
  if (o.grpc_request_timeout_s > 0) {
    req.add_args("--grpc-request-timeout-s");
    req.add_args(std::to_string(o.grpc_request_timeout_s));
  }
  // TLS files by path; the key's password in the environment (serve-proxy's main.cc).
  auto add_file = [&req](const char* flag, const std::string& path) {
    if (path.empty()) return;
    req.add_args(flag);
    req.add_args(path);
  };
  add_file("--ssl-keyfile", o.ssl_keyfile);
  add_file("--ssl-certfile", o.ssl_certfile);
  add_file("--ssl-ca-certs", o.ssl_ca_certs);
  if (!o.ssl_keyfile_password.empty()) {
    auto* kv = req.add_env();
    kv->set_key("SERVE_SSL_KEYFILE_PASSWORD");
    kv->set_value(o.ssl_keyfile_password);
  }
  actions.push_back(std::move(a));
}

bool ProxyStateManager::Reconcile(const std::map<std::string, std::string>& targets,
                                  bool shutting_down, Actions& actions) {
  if (shutting_down) {
    for (auto& [node, slot] : slots_) slot.restart_at.reset();
    return false;
  }
  bool changed = false;
  double now = clock_.Now();
  for (auto& [node, ip] : targets) {
    Slot& slot = slots_[node];
    if (!ip.empty()) slot.bind_ip = ip;
    auto it = proxies_.find(node);
    if (it == proxies_.end()) {
      Start(node, actions);
      changed = true;
    } else if (it->second.status == "DRAINING") {
      spdlog::info("Proxy on node {} is needed again: HEALTHY.", node);
      it->second.status = "HEALTHY";
      changed = true;
    } else if (slot.restart_at && now >= *slot.restart_at) {
      Start(node, actions);
    }
  }
  std::vector<std::string> dropped;
  for (auto& [node, p] : proxies_) {
    if (targets.count(node) != 0 || p.status == "DRAINING") continue;
    if (p.pid == 0) {
      dropped.push_back(node);  // no process (a restart was waiting): nothing to drain
      continue;
    }
    spdlog::info("Proxy on node {} is no longer needed there: DRAINING.", node);
    p.status = "DRAINING";
    p.message = "This node is being drained.";
    changed = true;
  }
  for (const std::string& node : dropped) Erase(node);
  return changed;
}

void ProxyStateManager::OnProcessStarted(const std::string& node_id,
                                         const absl::StatusOr<int>& pid) {
  auto it = proxies_.find(node_id);
  if (it == proxies_.end()) return;
  if (!pid.ok()) {
    if (it->second.pid != 0 || it->second.status != "STARTING" || slots_[node_id].restart_at) {
      return;
    }
    OnFailedStart(it->second, node_id,
                  "Cannot start the proxy process: " + std::string(pid.status().message()),
                  /*cannot_listen=*/false);
    return;
  }
  // A start report that arrives after its process already exited is stale.
  if (std::find(exited_pids_.begin(), exited_pids_.end(), *pid) != exited_pids_.end()) return;
  if (it->second.pid == 0) it->second.pid = *pid;
}

void ProxyStateManager::OnReady(const v1::ProxyReady& msg) {
  auto it = proxies_.find(msg.node_id());
  if (it == proxies_.end()) return;  // its node left meanwhile
  ProxyInfo& p = it->second;
  if (p.status != "DRAINING") {
    p.status = "HEALTHY";
    p.message.clear();
  }
  p.http_port = msg.http_port();
  p.pid = msg.pid();
  p.log_file = msg.log_file_path();
  Slot& slot = slots_[msg.node_id()];
  slot.last_port = p.http_port;
  slot.failures = 0;
  ever_healthy_ = true;
  spdlog::info("Proxy on node {} is HEALTHY, HTTP port {}.", msg.node_id(), p.http_port);
}

void ProxyStateManager::OnExit(const std::string& node_id, int pid, int exit_code,
                               bool shutting_down, Actions& actions) {
  exited_pids_.push_back(pid);
  if (exited_pids_.size() > 16) exited_pids_.pop_front();
  auto it = proxies_.find(node_id);
  // pid 0: the exit arrived before the agent's start report; there is one proxy per node.
  if (it == proxies_.end() || (it->second.pid != pid && it->second.pid != 0)) return;
  Slot& slot = slots_[node_id];
  if (slot.restart_at || (it->second.pid == 0 && it->second.status != "STARTING")) return;
  if (shutting_down || it->second.status == "DRAINING") {
    if (!shutting_down) spdlog::info("Proxy on node {} is DRAINED.", node_id);
    Erase(node_id);
    return;
  }
  if (it->second.status == "HEALTHY") {
    // It ran fine until now: restart at once, on the same port.
    spdlog::warn("Proxy on node {} {}; restarting it.", node_id, ExitText(exit_code));
    Start(node_id, actions);
    return;
  }
  std::string reason;
  bool cannot_listen = exit_code == kExitCannotListen;
  if (cannot_listen) {
    std::string file = context_.options.session_dir + "/proxy_" + node_id + ".error";
    if (auto text = ReadFile(file)) {
      reason = *text;
      while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) reason.pop_back();
    }
    if (reason.empty()) {
      int port = slot.last_port > 0 ? slot.last_port : context_.options.http_port;
      reason = "Cannot listen on " + context_.options.http_host + ":" + std::to_string(port);
    }
  } else {
    reason = "it " + ExitText(exit_code) + " before it was ready";
  }
  OnFailedStart(it->second, node_id, reason, cannot_listen);
}

void ProxyStateManager::OnFailedStart(ProxyInfo& proxy, const std::string& node_id,
                                      const std::string& reason, bool cannot_listen) {
  Slot& slot = slots_[node_id];
  ++slot.failures;
  proxy.pid = 0;
  if (IsHead(node_id) && !ever_healthy_ &&
      (cannot_listen || slot.failures >= kMaxStartFailures)) {
    // Start-up failed for good: the CLI that started the instance reports it and stops.
    proxy.status = "UNHEALTHY";
    proxy.message = "The HTTP proxy failed to start: " + reason +
                    (cannot_listen ? "." : " (" + std::to_string(slot.failures) + " attempts).");
    slot.restart_at.reset();
    spdlog::error("Proxy on node {}: {} Not restarting it.", node_id, proxy.message);
    return;
  }
  double delay = std::min(kRestartBaseS * std::pow(2.0, slot.failures - 1), kRestartCapS);
  proxy.status = ever_healthy_ ? "UNHEALTHY" : "STARTING";
  proxy.message = reason + "; restarting it in " + FormatSeconds(delay) + " s.";
  slot.restart_at = clock_.Now() + delay;
  spdlog::warn("Proxy on node {}: {}; restarting it in {} s (restart {}).", node_id, reason,
               FormatSeconds(delay), slot.failures);
}

void ProxyStateManager::OnNodeGone(const std::string& node_id) { Erase(node_id); }

void ProxyStateManager::Erase(const std::string& node_id) {
  proxies_.erase(node_id);
  slots_.erase(node_id);
}

void ProxyStateManager::Restore(const std::string& node_id, ProxyInfo proxy) {
  if (proxy.http_port > 0) slots_[node_id].last_port = proxy.http_port;
  ever_healthy_ = true;
  if (proxy.status != "DRAINING") proxy.status = "HEALTHY";
  proxies_[node_id] = std::move(proxy);
}

}  // namespace serve::controller

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

void ProxyStateManager::Start(Actions& actions) {
  const ControllerOptions& o = context_.options;
  if (o.proxy_location == "Disabled") return;
  restart_at_.reset();
  proxies_[o.node_id] = ProxyInfo{};
  int port = last_port_ > 0 ? last_port_ : o.http_port;
  double timeout = o.request_timeout_s > 0
                       ? o.request_timeout_s
                       : EnvDouble("RAY_SERVE_REQUEST_PROCESSING_TIMEOUT_S",
                                   EnvDouble("SERVE_REQUEST_PROCESSING_TIMEOUT_S", 0));
  StartProxyAction a;
  a.node_id = o.node_id;
  v1::StartProcessRequest& req = a.request;
  req.set_tag(ProcessTag::Proxy().Encode());
  req.set_log_prefix("ProxyActor");
  req.set_binary("serve-proxy");
  for (const std::string& arg :
       {std::string("--controller-address"), context_.address, std::string("--node-id"),
        o.node_id, std::string("--http-host"), o.http_host, std::string("--http-port"),
        std::to_string(port), std::string("--session-dir"), o.session_dir,
        std::string("--keep-alive-timeout-s"), std::to_string(o.keep_alive_timeout_s),
        std::string("--request-timeout-s"), std::to_string(timeout > 0 ? timeout : -1)}) {
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
  actions.push_back(std::move(a));
}

void ProxyStateManager::Step(bool shutting_down, Actions& actions) {
  if (!restart_at_) return;
  if (shutting_down) {
    restart_at_.reset();
    return;
  }
  if (clock_.Now() >= *restart_at_) Start(actions);
}

void ProxyStateManager::OnProcessStarted(const std::string& node_id,
                                         const absl::StatusOr<int>& pid) {
  auto it = proxies_.find(node_id);
  if (it == proxies_.end()) return;
  if (!pid.ok()) {
    if (it->second.pid != 0 || it->second.status != "STARTING" || restart_at_) return;
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
  ProxyInfo& p = proxies_[msg.node_id()];
  p.status = "HEALTHY";
  p.message.clear();
  p.http_port = msg.http_port();
  last_port_ = p.http_port;
  p.pid = msg.pid();
  p.log_file = msg.log_file_path();
  ever_healthy_ = true;
  failures_ = 0;
  spdlog::info("Proxy on node {} is HEALTHY, HTTP port {}.", msg.node_id(), p.http_port);
}

void ProxyStateManager::OnExit(const std::string& node_id, int pid, int exit_code,
                               bool shutting_down, Actions& actions) {
  exited_pids_.push_back(pid);
  if (exited_pids_.size() > 16) exited_pids_.pop_front();
  auto it = proxies_.find(node_id);
  // pid 0: the exit arrived before the agent's start report; there is one proxy per node.
  if (it == proxies_.end() || (it->second.pid != pid && it->second.pid != 0)) return;
  if (restart_at_ || (it->second.pid == 0 && it->second.status != "STARTING")) return;
  if (shutting_down) {
    proxies_.erase(it);
    restart_at_.reset();
    return;
  }
  if (it->second.status == "HEALTHY") {
    // It ran fine until now: restart at once, on the same port.
    spdlog::warn("Proxy on node {} {}; restarting it.", node_id, ExitText(exit_code));
    proxies_.erase(it);
    Start(actions);
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
      int port = last_port_ > 0 ? last_port_ : context_.options.http_port;
      reason = "Cannot listen on " + context_.options.http_host + ":" + std::to_string(port);
    }
  } else {
    reason = "it " + ExitText(exit_code) + " before it was ready";
  }
  OnFailedStart(it->second, node_id, reason, cannot_listen);
}

void ProxyStateManager::OnFailedStart(ProxyInfo& proxy, const std::string& node_id,
                                      const std::string& reason, bool cannot_listen) {
  ++failures_;
  proxy.pid = 0;
  if (!ever_healthy_ && (cannot_listen || failures_ >= kMaxStartFailures)) {
    // Start-up failed for good: the CLI that started the instance reports it and stops.
    proxy.status = "UNHEALTHY";
    proxy.message = "The HTTP proxy failed to start: " + reason +
                    (cannot_listen ? "." : " (" + std::to_string(failures_) + " attempts).");
    restart_at_.reset();
    spdlog::error("Proxy on node {}: {} Not restarting it.", node_id, proxy.message);
    return;
  }
  double delay = std::min(kRestartBaseS * std::pow(2.0, failures_ - 1), kRestartCapS);
  proxy.status = ever_healthy_ ? "UNHEALTHY" : "STARTING";
  proxy.message = reason + "; restarting it in " + FormatSeconds(delay) + " s.";
  restart_at_ = clock_.Now() + delay;
  spdlog::warn("Proxy on node {}: {}; restarting it in {} s (restart {}).", node_id, reason,
               FormatSeconds(delay), failures_);
}

void ProxyStateManager::Restore(const std::string& node_id, ProxyInfo proxy) {
  if (proxy.http_port > 0) last_port_ = proxy.http_port;
  ever_healthy_ = true;
  proxy.status = "HEALTHY";
  proxies_[node_id] = std::move(proxy);
}

}  // namespace serve::controller

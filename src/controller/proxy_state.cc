#include "controller/proxy_state.h"

#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/util.h"

namespace serve::controller {

ProxyStateManager::ProxyStateManager(const ControllerContext& context) : context_(context) {}

void ProxyStateManager::Start(Actions& actions) {
  const ControllerOptions& o = context_.options;
  if (o.proxy_location == "Disabled") return;
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
  actions.push_back(std::move(a));
}

void ProxyStateManager::OnProcessStarted(const std::string& node_id,
                                         const absl::StatusOr<int>& pid) {
  auto it = proxies_.find(node_id);
  if (it == proxies_.end()) return;
  if (!pid.ok()) {
    spdlog::error("Cannot start the proxy: {}", std::string(pid.status().message()));
    return;
  }
  if (it->second.pid == 0) it->second.pid = *pid;
}

void ProxyStateManager::OnReady(const v1::ProxyReady& msg) {
  ProxyInfo& p = proxies_[msg.node_id()];
  p.status = "HEALTHY";
  p.http_port = msg.http_port();
  last_port_ = p.http_port;
  p.pid = msg.pid();
  p.log_file = msg.log_file_path();
  spdlog::info("Proxy on node {} is HEALTHY, HTTP port {}.", msg.node_id(), p.http_port);
}

void ProxyStateManager::OnExit(const std::string& node_id, int pid, int exit_code,
                               bool shutting_down, Actions& actions) {
  auto it = proxies_.find(node_id);
  if (it == proxies_.end() || it->second.pid != pid) return;
  proxies_.erase(it);
  if (shutting_down) return;
  spdlog::warn("Proxy on node {} exited (code {}); restarting it.", node_id, exit_code);
  Start(actions);
}

void ProxyStateManager::Restore(const std::string& node_id, ProxyInfo proxy) {
  if (proxy.http_port > 0) last_port_ = proxy.http_port;
  proxy.status = "HEALTHY";
  proxies_[node_id] = std::move(proxy);
}

}  // namespace serve::controller

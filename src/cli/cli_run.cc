#include "cli/cli_internal.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "common/util.h"
#include "config/import_path.h"
#include "config/schema.h"
#include "launch/cluster.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::cli::detail {
using launch::CreateSessionDir;
using launch::RequestClusterShutdown;
using launch::StartLocalCluster;
using launch::StopAgent;
using launch::TempRoot;

namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal = sig; }

// Ray-style CLI log line: "2024-01-01 12:00:00,123\tINFO -- message".
void Log(const std::string& level, const std::string& message) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  std::fprintf(stdout, "%s,%03d\t%s -- %s\n", stamp, ms, level.c_str(), message.c_str());
  std::fflush(stdout);
}

}  // namespace

int CmdRun(RunArgs a) {
  bool is_config = LooksLikeConfigFile(a.target);
  auto kv = ParseKeyValues(a.kv);
  if (!kv.ok()) return Fail(std::string(kv.status().message()));
  nlohmann::json doc;
  std::vector<std::pair<std::string, std::string>> apps;  // name, route prefix ("" = none)
  if (is_config) {
    if (!kv->empty()) return Fail("Application arguments cannot be specified for a config file.");
    auto loaded = LoadConfigDocument(a.target, a.strict);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    doc = *loaded;
    auto parsed = config::ParseServeDeployConfig(doc);
    if (!parsed.ok()) return Fail(std::string(parsed.status().message()));
    // The config's http_options start the instance (they cannot change while it runs).
    a.cluster.http_host = parsed->http_options.host;
    a.cluster.http_port = parsed->http_options.port;
    a.cluster.root_path = parsed->http_options.root_path;
    a.cluster.request_timeout_s = parsed->http_options.request_timeout_s.value_or(-1);
    a.cluster.keep_alive_timeout_s = parsed->http_options.keep_alive_timeout_s;
    a.cluster.grpc_port = parsed->grpc_options.port;
    a.cluster.proxy_location = parsed->proxy_location;
    for (const auto& app : parsed->applications) apps.emplace_back(app.name, app.route_prefix.value_or(""));
  } else {
    auto import_path = config::ParseImportPath(a.target);
    if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
    auto library = config::ResolveLibrary(import_path->module, a.app_dir);
    if (!library.ok()) return Fail(std::string(library.status().message()));
    apps.emplace_back(a.name, a.route_prefix);
  }
  a.cluster.app_dir = AbsoluteDir(a.app_dir);

  std::string root = TempRoot(a.temp_dir);
  auto session = CreateSessionDir(root);
  if (!session.ok()) return Fail(std::string(session.status().message()));

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Log("INFO", is_config ? "Running config file: '" + a.target + "'."
                        : "Running import path: '" + a.target + "'.");
  auto cluster = StartLocalCluster(*session, a.cluster);
  if (!cluster.ok()) return Fail(std::string(cluster.status().message()));
  FollowUpFlags follow = FollowUp(root, cluster->dashboard_address);
  Log("INFO", "Started a local serve instance in " + *session + "; REST API at " +
                  cluster->dashboard_address + " (`serve status" + follow.address + "`).");

  auto shutdown = [&](int code) {
    if (auto st = RequestClusterShutdown(cluster->controller_address); !st.ok()) {
      Log("WARNING", std::string(st.message()));
    }
    StopAgent(cluster->agent_pid, EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
    return code;
  };

  if (is_config) {
    if (auto st = PutConfig(cluster->dashboard_address, doc); !st.ok()) {
      std::cerr << "Error: deploying '" << a.target << "' failed: " << st.message() << "\n";
      return shutdown(1);
    }
  } else {
    v1::DeployApplicationRequest req;
    req.set_name(a.name);
    req.set_import_path(a.target);
    req.set_route_prefix(a.route_prefix);
    req.set_has_route_prefix(true);
    req.set_args_json(nlohmann::json(*kv).dump());
    req.set_app_dir(a.cluster.app_dir);
    auto stub = v1::Controller::NewStub(rpc::ChannelTo(cluster->controller_address));
    auto ctx = rpc::ContextWithDeadline(30);
    v1::DeployApplicationReply reply;
    grpc::Status st = stub->DeployApplication(ctx.get(), req, &reply);
    if (!st.ok()) {
      std::cerr << "Error: deploying '" << a.name << "' failed: " << st.error_message() << "\n";
      return shutdown(1);
    }
  }

  // Wait for every application to be RUNNING (or fail), then block until interrupted.
  bool proxies_disabled = a.cluster.proxy_location == "Disabled";
  bool proxy_ready = proxies_disabled;
  std::optional<int> port;  // the proxy's bound port, once it reported ready
  std::set<std::string> ready;
  while (g_signal == 0) {
    int status;
    if (::waitpid(cluster->agent_pid, &status, WNOHANG) == cluster->agent_pid) {
      Log("INFO", "The serve instance stopped.");
      return ready.size() == apps.size() ? 0 : 1;
    }
    if (ready.size() < apps.size()) {
      auto details = GetDetailsRest(cluster->dashboard_address);
      if (std::optional<int> p = details.ok() ? ReadyProxyPort(*details) : std::nullopt) port = p;
      proxy_ready |= port.has_value();
      if (details.ok() && !proxy_ready) {
        if (auto failed = FailedProxy(*details, *session)) {
          std::cerr << "Error: " << *failed << " Free the port or choose another with "
                    << (is_config ? "http_options.port in " + a.target : "--http-port")
                    << ".\n";
          return shutdown(1);
        }
      }
      for (const auto& [name, prefix] : apps) {
        if (!details.ok() || ready.count(name) || !(*details)["applications"].contains(name)) continue;
        const auto& app = (*details)["applications"][name];
        std::string s = app.value("status", "");
        if (s == "RUNNING" && proxy_ready) {  // "ready at" needs the proxy's real port
          std::string host = a.cluster.http_host == "0.0.0.0" ? "127.0.0.1" : a.cluster.http_host;
          if (!prefix.empty() && port) {
            Log("INFO", "Application '" + name + "' is ready at http://" + host + ":" +
                            std::to_string(*port) + prefix + ".");
          }
          Log("INFO", "Deployed app '" + name + "' successfully.");
          ready.insert(name);
        } else if (s == "DEPLOY_FAILED") {
          std::cerr << "Error: Deploying application '" << name << "' failed:\n"
                    << app.value("message", "") << "\n";
          const nlohmann::json deployments = app.value("deployments", nlohmann::json::object());
          for (auto& [dname, dep] : deployments.items()) {
            if (dep.value("status", "") != "HEALTHY" && !dep.value("message", "").empty()) {
              std::cerr << "Deployment '" << dname << "': " << dep.value("message", "") << "\n";
            }
          }
          return shutdown(1);
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ready.size() == apps.size() ? 100 : 200));
  }
  Log("INFO", std::string("Got ") + (g_signal == SIGINT ? "SIGINT (KeyboardInterrupt)" : "SIGTERM") +
                  ". Shutting down Serve.");
  shutdown(0);
  Log("INFO", "Serve has shut down.");
  return 0;
}

}  // namespace serve::cli::detail

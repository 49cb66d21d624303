#include <signal.h>

#include "cli/cli_internal.h"

#include <chrono>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/rest_client.h"
#include "common/util.h"
#include "launch/cluster.h"

namespace serve::cli::detail {
using launch::ClusterOptions;
using launch::CreateSessionDir;
using launch::RequestClusterShutdown;
using launch::StartLocalCluster;
using launch::StopAgent;
using launch::StopCluster;
using launch::TempRoot;

int CmdStart(ClusterOptions options, const std::string& temp_dir, const std::string& app_dir,
             const std::string& session_dir) {
  options.detached = true;
  options.app_dir = AbsoluteDir(app_dir);
  std::string root = TempRoot(temp_dir);
  if (auto running = ReadFile(root + "/session_latest/dashboard_address")) {
    auto resp = RestCall("GET", *running + "/api/ray/version", "", 2);
    if (resp.ok() && resp->status == 200) {
      return Fail("Serve is already running (REST API at " + *running +
                  "). Stop it first with `serve stop" + FollowUp(root, *running).temp_dir + "`.");
    }
  }
  auto session = CreateSessionDir(root, session_dir);
  if (!session.ok()) return Fail(std::string(session.status().message()));
  auto cluster = StartLocalCluster(*session, options);
  if (!cluster.ok()) return Fail(std::string(cluster.status().message()));
  auto stop = [&](const std::string& message) {
    std::cerr << "Error: " << message << "\n";
    (void)RequestClusterShutdown(cluster->controller_address);
    StopAgent(cluster->agent_pid, EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
    std::cerr << "Stopped the serve instance it started (logs: " << *session << "/logs/).\n";
    return 1;
  };
  // Wait until the proxy reports its port (it may take a while on a loaded machine), or fails.
  std::string http = "(disabled: proxy_location Disabled)";
  if (options.proxy_location != "Disabled") {
    std::optional<int> port;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!port && std::chrono::steady_clock::now() < deadline) {
      auto details = GetDetailsRest(cluster->dashboard_address);
      if (details.ok()) {
        port = ReadyProxyPort(*details);
        if (auto failed = FailedProxy(*details, *session); failed && !port) {
          return stop(*failed + " Free the port or choose another with --http-port.");
        }
      }
      if (!port) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!port) {
      return stop("the HTTP proxy did not report ready within 30 s (port " +
                  std::to_string(options.http_port) + ")");
    }
    http = "http://" + options.http_host + ":" + std::to_string(*port);
  }
  FollowUpFlags follow = FollowUp(root, cluster->dashboard_address);
  std::string token_file = *session + "/" + launch::kClusterTokenFile;
  std::cout << "Started serve (session " << *session << ").\n"
            << "  HTTP proxy:  " << http << "\n"
            << "  REST API:    " << cluster->dashboard_address << "\n"
            << "  Controller:  " << cluster->controller_address
            << " (worker nodes join with `serve start --address " << cluster->controller_address
            << " --token-file <a copy of the token file>`)\n"
            << "  Token file:  " << token_file << " (keep it secret)\n"
            << "  Metrics:     " << cluster->metrics_address << "/metrics\n"
            << "Next:\n"
            << "  serve deploy config.yaml" << follow.address << "\n"
            << "  serve status" << follow.address << "\n"
            << "  serve stop" << follow.temp_dir << "\n";
  return 0;
}

int CmdStartWorker(const ClusterOptions& options, const std::string& temp_dir,
                   const std::string& controller_address) {
  std::string root = TempRoot(temp_dir);
  if (auto pid = ReadFile(root + "/session_latest/agent_pid")) {
    if (::kill(std::atoi(pid->c_str()), 0) == 0) {
      return Fail("a serve node is already running from " + root +
                  " (agent pid " + *pid + "). Stop it first with `serve stop`" +
                  (temp_dir.empty() ? "" : " --temp-dir " + temp_dir) + ".");
    }
  }
  auto session = CreateSessionDir(root);
  if (!session.ok()) return Fail(std::string(session.status().message()));
  launch::WorkerOptions w;
  w.controller_address = controller_address;
  w.node_ip = options.node_ip;
  w.metrics_export_port = options.metrics_export_port;
  w.bin_dir = options.bin_dir;
  w.agent_args = options.agent_args;
  w.token = options.token;
  auto node = launch::StartWorkerNode(*session, w);
  if (!node.ok()) return Fail(std::string(node.status().message()));
  std::cout << "Started a worker node (session " << *session << ").\n"
            << "  Node:        " << node->node_id << " at " << node->node_ip << "\n"
            << "  Head:        " << controller_address << "\n"
            << "  Metrics:     " << node->metrics_address << "/metrics\n"
            << "Stop it with `serve stop" << (temp_dir.empty() ? "" : " --temp-dir " + temp_dir)
            << "` on this machine.\n";
  return 0;
}

int CmdStop(const std::string& temp_dir) {
  auto stopped = StopCluster(TempRoot(temp_dir), EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
  if (!stopped.ok()) return Fail(std::string(stopped.status().message()));
  std::cout << (*stopped ? "Stopped serve.\n" : "No running serve instance found.\n");
  return 0;
}

int CmdShutdown(const std::string& address, bool yes) {
  auto version = RestCall("GET", address + "/api/ray/version", "", 5);
  if (!version.ok()) {
    std::cerr << "Warning: " << version.status().message() << "\n";
    return 0;
  }
  if (!yes) {
    std::cout << "This will shut down Serve on the cluster at address \"" << address
              << "\" and delete all applications there. Do you want to continue? [y/N]: "
              << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer) || (answer != "y" && answer != "Y" && answer != "yes")) {
      std::cerr << "Aborted!\n";
      return 1;
    }
  }
  auto resp = RestCall("DELETE", address + "/api/serve/applications/");
  if (!resp.ok()) return Fail(std::string(resp.status().message()));
  if (resp->status != 200) return Fail(resp->body);
  std::cout << "Sent shutdown request; applications will be deleted asynchronously.\n";
  return 0;
}

int CmdDrainNode(const std::string& address, const std::string& node_id, double deadline_s) {
  std::string url = address + "/api/serve/nodes/" + node_id + "/drain";
  if (deadline_s > 0) url += "?deadline_s=" + std::to_string(deadline_s);
  auto resp = RestCall("POST", url);
  if (!resp.ok()) return Fail(std::string(resp.status().message()));
  if (resp->status != 200) return Fail("Cannot drain node " + node_id + ": " + resp->body);
  std::cout << "Draining node " << node_id
            << ": its replicas move to other nodes, then it stops (see `serve status`).\n";
  return 0;
}

}  // namespace serve::cli::detail

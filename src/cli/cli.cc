#include "cli/cli.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli/cluster.h"
#include "cli/status_format.h"
#include "common/util.h"
#include "config/import_path.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::cli {
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

int Fail(const std::string& message) {
  std::cerr << "Error: " << message << "\n";
  return 1;
}

struct RunArgs {
  std::string import_path;
  std::vector<std::string> kv;
  std::string app_dir = ".";
  std::string name = "default";
  std::string route_prefix = "/";
  std::string http_host = "127.0.0.1";
  int http_port = 8000;
  std::string temp_dir;
};

int CmdRun(RunArgs a) {
  std::map<std::string, std::string> args;
  for (const auto& item : a.kv) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail("Invalid argument '" + item + "': arguments must be of the form '<key>=<val>'.");
    }
    args[item.substr(0, eq)] = item.substr(eq + 1);
  }
  auto import_path = config::ParseImportPath(a.import_path);
  if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
  auto library = config::ResolveLibrary(import_path->module, a.app_dir);
  if (!library.ok()) return Fail(std::string(library.status().message()));

  auto session = CreateSessionDir(TempRoot(a.temp_dir));
  if (!session.ok()) return Fail(std::string(session.status().message()));

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Log("INFO", "Running import path: '" + a.import_path + "'.");
  ClusterOptions copts;
  copts.http_host = a.http_host;
  copts.http_port = a.http_port;
  auto cluster = StartLocalCluster(*session, copts);
  if (!cluster.ok()) return Fail(std::string(cluster.status().message()));
  Log("INFO", "Started a local serve instance in " + *session + ".");

  auto shutdown = [&](int code) {
    if (auto st = RequestShutdown(cluster->controller_address); !st.ok()) {
      Log("WARNING", std::string(st.message()));
    }
    StopAgent(cluster->agent_pid, EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
    return code;
  };

  {
    std::string args_json = nlohmann::json(args).dump();
    v1::DeployApplicationRequest req;
    req.set_name(a.name);
    req.set_import_path(a.import_path);
    req.set_route_prefix(a.route_prefix);
    req.set_has_route_prefix(true);
    req.set_args_json(args_json);
    req.set_app_dir(std::filesystem::absolute(a.app_dir).lexically_normal().string());
    auto stub = v1::Controller::NewStub(rpc::ChannelTo(cluster->controller_address));
    auto ctx = rpc::ContextWithDeadline(30);
    v1::DeployApplicationReply reply;
    grpc::Status st = stub->DeployApplication(ctx.get(), req, &reply);
    if (!st.ok()) {
      std::cerr << "Error: deploying '" << a.name << "' failed: " << st.error_message() << "\n";
      return shutdown(1);
    }
  }

  // Wait for the application to be RUNNING (or fail), then block until interrupted.
  bool ready = false;
  std::string last_status;
  while (g_signal == 0) {
    int status;
    if (::waitpid(cluster->agent_pid, &status, WNOHANG) == cluster->agent_pid) {
      Log("INFO", "The serve instance stopped.");
      return ready ? 0 : 1;
    }
    if (!ready) {
      auto details = GetDetails(cluster->controller_address);
      if (details.ok() && details->contains("applications") &&
          (*details)["applications"].contains(a.name)) {
        auto& app = (*details)["applications"][a.name];
        std::string s = app.value("status", "");
        if (s != last_status) last_status = s;
        if (s == "RUNNING") {
          int port = (*details)["http_options"].value("port", a.http_port);
          std::string prefix = a.route_prefix == "/" ? "/" : a.route_prefix;
          Log("INFO", "Application '" + a.name + "' is ready at http://" + a.http_host + ":" +
                          std::to_string(port) + prefix + ".");
          Log("INFO", "Deployed app '" + a.name + "' successfully.");
          ready = true;
        } else if (s == "DEPLOY_FAILED") {
          std::cerr << "Error: Deploying application '" << a.name << "' failed:\n"
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
    std::this_thread::sleep_for(std::chrono::milliseconds(ready ? 100 : 200));
  }
  Log("INFO", std::string("Got ") + (g_signal == SIGINT ? "SIGINT (KeyboardInterrupt)" : "SIGTERM") +
                  ". Shutting down Serve.");
  shutdown(0);
  Log("INFO", "Serve has shut down.");
  return 0;
}

int CmdStatus(const std::string& temp_dir, const std::string& name) {
  auto address = FindControllerAddress(TempRoot(temp_dir));
  if (!address.ok()) return Fail(std::string(address.status().message()));
  auto details = GetDetails(*address);
  if (!details.ok()) return Fail(std::string(details.status().message()));
  std::cout << FormatStatus(*details, name);
  return 0;
}

int CmdShutdown(const std::string& temp_dir, bool yes) {
  auto address = FindControllerAddress(TempRoot(temp_dir));
  if (!address.ok()) {
    std::cerr << "Warning: " << address.status().message() << "\n";
    return 0;
  }
  if (!yes) {
    std::cout << "This will shut down Serve on the cluster at address \"" << *address
              << "\" and delete all applications there. Do you want to continue? [y/N]: "
              << std::flush;
    std::string answer;
    if (!std::getline(std::cin, answer) || (answer != "y" && answer != "Y" && answer != "yes")) {
      std::cerr << "Aborted!\n";
      return 1;
    }
  }
  if (auto st = RequestShutdown(*address); !st.ok()) return Fail(std::string(st.message()));
  std::cout << "Sent shutdown request; applications will be deleted asynchronously.\n";
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"serve: run and manage serve applications"};
  app.require_subcommand(1);
  std::string temp_dir;

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run an application locally and block until Ctrl-C.");
  run_cmd->add_option("import_path", run.import_path, "module:app")->required();
  run_cmd->add_option("args", run.kv, "key=value builder arguments");
  run_cmd->add_option("-d,--app-dir", run.app_dir, "directory searched for lib<module>.so");
  run_cmd->add_option("--name", run.name, "application name");
  run_cmd->add_option("--route-prefix", run.route_prefix, "HTTP route prefix");
  run.http_host = EnvString("SERVE_HTTP_HOST", run.http_host);
  run.http_port = static_cast<int>(EnvDouble("SERVE_HTTP_PORT", run.http_port));
  run_cmd->add_option("--http-host", run.http_host, "HTTP host of the proxy");
  run_cmd->add_option("--http-port", run.http_port, "HTTP port of the proxy (0: any free port)");
  run_cmd->add_option("--temp-dir", temp_dir, "root of session directories (default /tmp/serve)");

  std::string status_name;
  auto* status_cmd = app.add_subcommand("status", "Print the status of the applications.");
  status_cmd->add_option("-n,--name", status_name, "only this application");
  status_cmd->add_option("--temp-dir", temp_dir);

  bool yes = false;
  auto* shutdown_cmd = app.add_subcommand("shutdown", "Delete every application and stop serve.");
  shutdown_cmd->add_flag("-y,--yes", yes, "do not ask for confirmation");
  shutdown_cmd->add_option("--temp-dir", temp_dir);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*run_cmd) {
    run.temp_dir = temp_dir;
    return CmdRun(run);
  }
  if (*status_cmd) return CmdStatus(temp_dir, status_name);
  if (*shutdown_cmd) return CmdShutdown(temp_dir, yes);
  return 1;
}

}  // namespace serve::cli

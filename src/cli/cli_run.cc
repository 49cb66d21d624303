#include "cli/cli_internal.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
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

namespace {

// Source files whose change triggers a rebuild under --reload.
bool IsSourceFile(const std::filesystem::path& p) {
  static const std::set<std::string> kExt = {".cc", ".cpp", ".cxx", ".c",   ".h",
                                             ".hh", ".hpp", ".hxx", ".ipp", ".cmake"};
  return kExt.count(p.extension().string()) > 0 || p.filename() == "CMakeLists.txt";
}

// path -> "size@mtime" of every source file under `dir`, skipping hidden directories and
// CMake build trees (directories holding a CMakeCache.txt).
std::map<std::string, std::string> SnapshotSources(const std::string& dir) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> out;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end && out.size() < 20000; it.increment(ec)) {
    const fs::path& p = it->path();
    std::error_code e2;
    if (it->is_directory(e2)) {
      std::string name = p.filename().string();
      if ((!name.empty() && name[0] == '.') || fs::exists(p / "CMakeCache.txt", e2)) {
        it.disable_recursion_pending();
      }
      continue;
    }
    if (!IsSourceFile(p)) continue;
    auto size = fs::file_size(p, e2);
    auto mtime = fs::last_write_time(p, e2).time_since_epoch().count();
    out[p.string()] = std::to_string(size) + "@" + std::to_string(mtime);
  }
  return out;
}

// The source directory of the CMake build tree `build_dir`, or "" when it is not one.
std::string CMakeSourceDir(const std::string& build_dir) {
  auto cache = ReadFile(build_dir + "/CMakeCache.txt");
  if (!cache) return "";
  const std::string key = "CMAKE_HOME_DIRECTORY:INTERNAL=";
  auto pos = cache->find(key);
  if (pos == std::string::npos) return "";
  auto eol = cache->find('\n', pos);
  return cache->substr(pos + key.size(), eol == std::string::npos ? std::string::npos
                                                                  : eol - pos - key.size());
}

}  // namespace

int CmdRun(RunArgs a) {
  bool is_config = LooksLikeConfigFile(a.target);
  auto kv = ParseKeyValues(a.kv);
  if (!kv.ok()) return Fail(std::string(kv.status().message()));
  auto runtime_env = RuntimeEnvFromFlags(a.runtime_env_file, a.runtime_env_json, a.working_dir);
  if (!runtime_env.ok()) return Fail(std::string(runtime_env.status().message()));
  nlohmann::json doc;                              // what a fresh instance gets PUT
  nlohmann::json ours = nlohmann::json::array();   // the application configs deployed here
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
    // Relative TLS paths are relative to the current directory, made absolute for the proxies.
    auto absolute = [](const std::optional<std::string>& path) {
      return path ? std::filesystem::absolute(*path).string() : std::string();
    };
    a.cluster.ssl_keyfile = absolute(parsed->http_options.ssl_keyfile);
    a.cluster.ssl_certfile = absolute(parsed->http_options.ssl_certfile);
    a.cluster.ssl_keyfile_password = parsed->http_options.ssl_keyfile_password.value_or("");
    a.cluster.ssl_ca_certs = absolute(parsed->http_options.ssl_ca_certs);
    a.cluster.grpc_port = parsed->grpc_options.port;
    a.cluster.grpc_servicer_functions = parsed->grpc_options.grpc_servicer_functions;
    a.cluster.grpc_request_timeout_s = parsed->grpc_options.request_timeout_s.value_or(-1);
    a.cluster.proxy_location = parsed->proxy_location;
    for (const auto& app : parsed->applications) apps.emplace_back(app.name, app.route_prefix.value_or(""));
    // The runtime env flags are defaults for every application of the file (as Ray's job-level
    // runtime env).
    if (doc.contains("applications") && doc["applications"].is_array()) {
      for (auto& app : doc["applications"]) MergeRuntimeEnv(app, *runtime_env);
      ours = doc["applications"];
    } else {
      MergeRuntimeEnv(doc, *runtime_env);
      for (const auto& app : parsed->applications) ours.push_back(app.submitted);
      for (auto& app : ours) MergeRuntimeEnv(app, *runtime_env);
    }
  } else {
    auto import_path = config::ParseImportPath(a.target);
    if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
    // A local working_dir is where the replicas look for the library.
    std::string lookup = a.app_dir;
    std::error_code ec;
    if (runtime_env->contains("working_dir") && (*runtime_env)["working_dir"].is_string() &&
        std::filesystem::is_directory((*runtime_env)["working_dir"].get<std::string>(), ec)) {
      lookup = (*runtime_env)["working_dir"];
    }
    auto library = config::ResolveLibrary(import_path->module, lookup);
    if (!library.ok()) return Fail(std::string(library.status().message()));
    apps.emplace_back(a.name, a.route_prefix);
    nlohmann::json app = {{"name", a.name},
                          {"route_prefix", a.route_prefix},
                          {"import_path", a.target},
                          {"args", *kv}};
    if (!runtime_env->empty()) app["runtime_env"] = *runtime_env;
    ours.push_back(app);
    doc = {{"applications", ours}};
  }
  a.cluster.app_dir = AbsoluteDir(a.app_dir);
  std::string root = TempRoot(a.temp_dir);

  // An instance to deploy onto: -a, else the one `serve deploy` would use, when it answers.
  std::string attached;
  if (!a.address.empty()) {
    if (!RestReachable(a.address, 5)) {
      return Fail("No serve instance answers at " + a.address +
                  " (GET /api/ray/version failed). Start one with `serve start`, or drop -a.");
    }
    attached = a.address;
  } else {
    for (const std::string& candidate :
         {EnvString("SERVE_DASHBOARD_ADDRESS", EnvString("RAY_DASHBOARD_ADDRESS", "")),
          launch::LiveSessionDashboard(root).value_or("")}) {
      if (!candidate.empty() && RestReachable(candidate)) {
        attached = candidate;
        break;
      }
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, prefix] : apps) names.push_back(name);
  if (!attached.empty()) {
    // The instance was started with its own library dir: send ours with each application.
    for (auto& app : ours) AddAppPath(app, a.cluster.app_dir);
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  Log("INFO", is_config ? "Running config file: '" + a.target + "'."
                        : "Running import path: '" + a.target + "'.");
  std::optional<launch::LocalCluster> cluster;
  std::string session, dashboard;
  if (attached.empty()) {
    auto created = CreateSessionDir(root);
    if (!created.ok()) return Fail(std::string(created.status().message()));
    session = *created;
    a.cluster.detached = a.non_blocking;  // --non-blocking: the instance outlives this command
    auto started = StartLocalCluster(session, a.cluster);
    if (!started.ok()) return Fail(std::string(started.status().message()));
    cluster = *started;
    dashboard = cluster->dashboard_address;
    FollowUpFlags follow = FollowUp(root, dashboard);
    Log("INFO", "Started a local serve instance in " + session + "; REST API at " + dashboard +
                    " (`serve status" + follow.address + "`); metrics at " +
                    cluster->metrics_address + "/metrics.");
  } else {
    dashboard = attached;
    Log("INFO", "Deploying onto the running serve instance at " + dashboard +
                    "; Ctrl-C deletes only the application(s) deployed here.");
  }

  // Ends the run: deletes our applications (attached) or shuts the started instance down.
  auto finish = [&](int code) {
    if (!cluster) {
      if (auto st = PutMerged(dashboard, nlohmann::json::array(), names); !st.ok()) {
        Log("WARNING", "Cannot delete the application(s): " + std::string(st.message()));
        return code;
      }
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (std::chrono::steady_clock::now() < deadline) {
        auto details = GetDetailsRest(dashboard);
        bool left = !details.ok();
        for (const auto& n : names) left |= details.ok() && (*details)["applications"].contains(n);
        if (!left) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return code;
    }
    if (auto st = RequestClusterShutdown(cluster->controller_address); !st.ok()) {
      Log("WARNING", std::string(st.message()));
    }
    StopAgent(cluster->agent_pid, EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
    return code;
  };

  auto deploy = [&]() -> absl::Status {
    if (!cluster) return PutMerged(dashboard, ours, {});
    if (is_config || !runtime_env->empty()) return PutConfig(dashboard, doc);
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
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    return absl::OkStatus();
  };
  if (auto st = deploy(); !st.ok()) {
    std::cerr << "Error: deploying '" << a.target << "' failed: " << st.message() << "\n";
    return finish(1);
  }

  // --reload: the sources watched and the build command.
  std::string reload_dir, reload_command;
  std::map<std::string, std::string> sources;
  if (a.reload) {
    reload_dir = a.reload_dir;
    if (reload_dir.empty()) reload_dir = CMakeSourceDir(a.cluster.app_dir);
    if (reload_dir.empty()) reload_dir = a.cluster.app_dir;
    reload_dir = AbsoluteDir(reload_dir);
    reload_command = a.reload_command.empty() ? "cmake --build '" + a.cluster.app_dir + "'"
                                              : a.reload_command;
    sources = SnapshotSources(reload_dir);
    Log("INFO", "Watching " + std::to_string(sources.size()) + " source file(s) under " +
                    reload_dir + "; a change runs `" + reload_command + "` and redeploys.");
  }
  auto last_scan = std::chrono::steady_clock::now();
  bool deployed_once = false;

  // Wait for every application to be RUNNING (or fail), then block until interrupted.
  bool proxy_ready = !cluster || a.cluster.proxy_location == "Disabled";
  std::optional<int> port;  // the proxy's bound port, once it reported ready
  std::set<std::string> ready;
  while (g_signal == 0) {
    int status;
    if (cluster && ::waitpid(cluster->agent_pid, &status, WNOHANG) == cluster->agent_pid) {
      Log("INFO", "The serve instance stopped.");
      return ready.size() == apps.size() ? 0 : 1;
    }
    if (ready.size() < apps.size()) {
      auto details = GetDetailsRest(dashboard);
      if (!cluster && !details.ok()) {
        std::cerr << "Error: lost the serve instance at " << dashboard << ": "
                  << details.status().message() << "\n";
        return 1;
      }
      if (std::optional<int> p = details.ok() ? ReadyProxyPort(*details) : std::nullopt) port = p;
      proxy_ready |= port.has_value();
      if (details.ok() && !proxy_ready && cluster) {
        if (auto failed = FailedProxy(*details, session)) {
          std::cerr << "Error: " << *failed;
          if (failed->find("Cannot listen") != std::string::npos) {
            std::cerr << " Free the port or choose another with "
                      << (is_config ? "http_options.port in " + a.target : "--http-port") << ".";
          }
          std::cerr << "\n";
          return finish(1);
        }
      }
      std::string host = a.cluster.http_host;
      if (!cluster && details.ok()) {
        host = details->value("http_options", nlohmann::json::object()).value("host", host);
      }
      if (host == "0.0.0.0") host = "127.0.0.1";
      for (const auto& [name, prefix] : apps) {
        if (!details.ok() || ready.count(name) || !(*details)["applications"].contains(name)) continue;
        const auto& app = (*details)["applications"][name];
        std::string s = app.value("status", "");
        if (s == "RUNNING" && proxy_ready) {  // "ready at" needs the proxy's real port
          if (!prefix.empty() && port) {
            Log("INFO", "Application '" + name + "' is ready at " +
                            (a.cluster.ssl_certfile.empty() ? "http://" : "https://") + host + ":" +
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
          if (!(a.reload && deployed_once)) return finish(1);
          ready.insert(name);  // --reload: keep watching for a fix
        }
      }
      if (ready.size() == apps.size()) {
        deployed_once = true;
        if (a.non_blocking) {
          Log("INFO", cluster ? "Not blocking (--non-blocking); the instance keeps running: "
                                "stop it with `serve stop" + FollowUp(root, dashboard).temp_dir + "`."
                              : std::string("Not blocking (--non-blocking)."));
          return 0;
        }
      }
    }
    if (a.reload && deployed_once &&
        std::chrono::steady_clock::now() - last_scan > std::chrono::milliseconds(300)) {
      last_scan = std::chrono::steady_clock::now();
      auto now = SnapshotSources(reload_dir);
      if (now != sources) {
        // Let an editor finish writing before building.
        for (int i = 0; i < 10; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          auto again = SnapshotSources(reload_dir);
          if (again == now) break;
          now = std::move(again);
        }
        sources = std::move(now);
        Log("INFO", "Sources changed; running `" + reload_command + "`.");
        int rc = std::system(reload_command.c_str());
        // system() ignores SIGINT while the build runs; a Ctrl-C that stopped it ends the run.
        if (rc != -1 && WIFSIGNALED(rc) && WTERMSIG(rc) == SIGINT) g_signal = SIGINT;
        if (g_signal != 0) break;
        if (rc != 0) {
          std::cerr << "Error: the build failed (`" << reload_command << "` exited with status "
                    << (WIFEXITED(rc) ? WEXITSTATUS(rc) : rc)
                    << "); the previous version keeps serving.\n";
          std::cerr.flush();
        } else if (auto st = deploy(); !st.ok()) {
          std::cerr << "Error: redeploying failed: " << st.message() << "\n";
        } else {
          Log("INFO", "Rebuilt; redeploying.");
          ready.clear();
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ready.size() == apps.size() ? 100 : 200));
  }
  Log("INFO", std::string("Got ") + (g_signal == SIGINT ? "SIGINT (KeyboardInterrupt)" : "SIGTERM") +
                  (cluster ? ". Shutting down Serve." : ". Deleting the application(s) deployed here."));
  finish(0);
  Log("INFO", cluster ? "Serve has shut down." : "Deleted the application(s).");
  return 0;
}

}  // namespace serve::cli::detail

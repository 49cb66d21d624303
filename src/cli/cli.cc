#include "cli/cli.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <ctime>
#include <iostream>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <thread>

#include <CLI/CLI.hpp>

#include "launch/cluster.h"
#include "cli/rest_client.h"
#include "cli/status_format.h"
#include "config/deployment_config.h"
#include "config/schema.h"
#include "common/util.h"
#include "config/import_path.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::cli {
using launch::ClusterOptions;
using launch::CreateSessionDir;
using launch::DashboardAddress;
using launch::LocalCluster;
using launch::RequestClusterShutdown;
using launch::StartLocalCluster;
using launch::StopAgent;
using launch::StopCluster;
using launch::TempRoot;

namespace {

/// The HTTP port once a proxy reported HEALTHY (with its bound port), else nullopt.
std::optional<int> ReadyProxyPort(const nlohmann::json& details) {
  bool healthy = false;
  const nlohmann::json proxies = details.value("proxies", nlohmann::json::object());
  for (auto& [node, p] : proxies.items()) healthy |= p.value("status", "") == "HEALTHY";
  if (!healthy) return std::nullopt;
  int port = details.value("http_options", nlohmann::json::object()).value("port", 0);
  if (port <= 0) return std::nullopt;  // asked for port 0 and the real one is not known yet
  return port;
}

// The reason the HTTP proxy failed to start for good (UNHEALTHY before any proxy was ready):
// its message in the details, else the line it wrote into the session directory
// (proxy/proxy.cc), else a pointer to the logs. nullopt while no proxy has failed.
std::optional<std::string> FailedProxy(const nlohmann::json& details,
                                       const std::string& session_dir) {
  const nlohmann::json proxies = details.value("proxies", nlohmann::json::object());
  for (auto& [node, p] : proxies.items()) {
    if (p.value("status", "") != "UNHEALTHY") continue;
    std::string message = p.value("message", "");
    if (message.empty()) {
      if (auto text = ReadFile(session_dir + "/proxy_" + node + ".error")) {
        message = *text;
        while (!message.empty() && (message.back() == '\n' || message.back() == '.')) {
          message.pop_back();
        }
        message = "The HTTP proxy failed to start: " + message + ".";
      } else {
        message = "The HTTP proxy failed to start; see " + session_dir + "/logs/serve/.";
      }
    }
    return message;
  }
  return std::nullopt;
}

// `s` quoted for a POSIX shell when it needs quoting.
std::string ShellQuote(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s) {
    plain &= std::isalnum(static_cast<unsigned char>(c)) != 0 ||
             std::string_view("_/.:=@%+,-").find(c) != std::string_view::npos;
  }
  if (plain) return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The flags that make a later command reach this instance: `-a REST` when a plain command
// would resolve another REST address (a non-default temp dir, or $SERVE_DASHBOARD_ADDRESS /
// $RAY_DASHBOARD_ADDRESS pointing elsewhere); `--temp-dir ROOT` for a non-default temp dir.
struct FollowUpFlags {
  std::string address;   // " -a http://..." or ""
  std::string temp_dir;  // " --temp-dir ROOT" or ""
};
FollowUpFlags FollowUp(const std::string& root, const std::string& dashboard) {
  FollowUpFlags f;
  bool default_root = std::filesystem::path(root).lexically_normal() == "/tmp/serve";
  std::string env = EnvString("SERVE_DASHBOARD_ADDRESS", EnvString("RAY_DASHBOARD_ADDRESS", ""));
  if (!default_root || (!env.empty() && env != dashboard)) {
    f.address = " -a " + ShellQuote(dashboard);
  }
  if (!default_root) f.temp_dir = " --temp-dir " + ShellQuote(root);
  return f;
}

// Prints each unknown-field warning of a config file to stderr.
void PrintWarnings(const std::string& path, const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) std::cerr << "Warning: " << path << ": " << w << "\n";
}

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

// Absolute, normalised form of a user-given directory ("" means the current directory).
std::string AbsoluteDir(const std::string& dir) {
  std::error_code ec;
  auto p = std::filesystem::absolute(dir.empty() ? "." : dir, ec);
  return ec ? dir : p.lexically_normal().string();
}

int Fail(const std::string& message) {
  std::cerr << "Error: " << message << "\n";
  return 1;
}

bool LooksLikeConfigFile(const std::string& target) {
  auto ends = [&](const char* ext) {
    std::string e(ext);
    return target.size() > e.size() && target.compare(target.size() - e.size(), e.size(), e) == 0;
  };
  return ends(".yaml") || ends(".yml") || ends(".json");
}

absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(
    const std::vector<std::string>& items) {
  std::map<std::string, std::string> args;
  for (const auto& item : items) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError("Invalid argument '" + item +
                                        "': arguments must be of the form '<key>=<val>'.");
    }
    args[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return args;
}

// The config document (JSON) of a config file, with relative working_dir paths made absolute
// against the file's directory. Validated locally so errors show before anything starts;
// unknown fields are warned about on stderr, or rejected when `strict`.
absl::StatusOr<nlohmann::json> LoadConfigDocument(const std::string& path, bool strict) {
  auto text = ReadFile(path);
  if (!text) return absl::NotFoundError("Cannot read config file '" + path + "'.");
  auto doc = config::YamlToJson(*text);
  if (!doc.ok()) {
    return absl::InvalidArgumentError(path + ": " + std::string(doc.status().message()));
  }
  std::vector<std::string> warnings;
  auto parsed = config::ParseServeDeployConfig(*text, {.strict = strict, .warnings = &warnings});
  if (!parsed.ok()) {
    std::string message(parsed.status().message());
    if (strict && message.find("unknown field") != std::string::npos) {
      message += " [strict mode: unknown fields are rejected]";
    }
    return absl::InvalidArgumentError(path + ": " + message);
  }
  PrintWarnings(path, warnings);
  std::filesystem::path base = std::filesystem::path(AbsoluteDir(path)).parent_path();
  auto fix = [&](nlohmann::json& app) {
    if (!app.is_object() || !app.contains("runtime_env") || !app["runtime_env"].is_object()) return;
    auto& env = app["runtime_env"];
    if (env.contains("working_dir") && env["working_dir"].is_string()) {
      std::string wd = env["working_dir"];
      if (wd.find("://") == std::string::npos && !wd.empty() && wd[0] != '/') {
        env["working_dir"] = (base / wd).lexically_normal().string();
      }
    }
  };
  if (doc->contains("applications") && (*doc)["applications"].is_array()) {
    for (auto& app : (*doc)["applications"]) fix(app);
  } else {
    fix(*doc);
  }
  return *doc;
}

absl::StatusOr<nlohmann::json> GetDetailsRest(const std::string& dashboard) {
  auto resp = RestCall("GET", dashboard + "/api/serve/applications/");
  if (!resp.ok()) return resp.status();
  if (resp->status != 200) {
    return absl::UnavailableError("GET " + dashboard + "/api/serve/applications/ returned " +
                                  std::to_string(resp->status) + ": " + resp->body);
  }
  auto j = nlohmann::json::parse(resp->body, nullptr, false);
  if (j.is_discarded()) return absl::InternalError("the REST API returned invalid JSON");
  return j;
}

absl::Status PutConfig(const std::string& dashboard, const nlohmann::json& doc) {
  auto resp = RestCall("PUT", dashboard + "/api/serve/applications/", doc.dump());
  if (!resp.ok()) return resp.status();
  if (resp->status != 200) return absl::InvalidArgumentError(resp->body);
  return absl::OkStatus();
}

struct RunArgs {
  std::string target;
  std::vector<std::string> kv;
  std::string app_dir = ".";
  std::string name = "default";
  std::string route_prefix = "/";
  ClusterOptions cluster;
  std::string temp_dir;
  bool strict = false;
};

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
  std::cout << "Started serve (session " << *session << ").\n"
            << "  HTTP proxy:  " << http << "\n"
            << "  REST API:    " << cluster->dashboard_address << "\n"
            << "Next:\n"
            << "  serve deploy config.yaml" << follow.address << "\n"
            << "  serve status" << follow.address << "\n"
            << "  serve stop" << follow.temp_dir << "\n";
  return 0;
}

int CmdStop(const std::string& temp_dir) {
  auto stopped = StopCluster(TempRoot(temp_dir), EnvDouble("SERVE_SHUTDOWN_TIMEOUT_S", 60));
  if (!stopped.ok()) return Fail(std::string(stopped.status().message()));
  std::cout << (*stopped ? "Stopped serve.\n" : "No running serve instance found.\n");
  return 0;
}

// `app_dir` (optional) is added to each application's library search path as
// runtime_env.env_vars.SERVE_APP_PATH (prepended to one the config sets), so it must be a
// directory the instance's machine can read.
int CmdDeploy(const std::string& target, const std::vector<std::string>& kv_items,
              const std::string& address, const std::string& name,
              const std::string& route_prefix, const std::string& app_dir, bool strict) {
  auto kv = ParseKeyValues(kv_items);
  if (!kv.ok()) return Fail(std::string(kv.status().message()));
  nlohmann::json doc;
  if (LooksLikeConfigFile(target)) {
    if (!kv->empty()) return Fail("Application arguments cannot be specified for a config file.");
    auto loaded = LoadConfigDocument(target, strict);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    doc = *loaded;
  } else {
    auto import_path = config::ParseImportPath(target);
    if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
    doc = {{"applications",
            {{{"name", name}, {"route_prefix", route_prefix}, {"import_path", target},
              {"args", *kv}}}}};
  }
  if (!app_dir.empty()) {
    std::string dir = AbsoluteDir(app_dir);
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return Fail("--app-dir " + dir + " is not a directory.");
    }
    auto add = [&](nlohmann::json& app) {
      if (!app.is_object()) return;
      nlohmann::json& env = app["runtime_env"];
      if (!env.is_object()) env = nlohmann::json::object();
      nlohmann::json& vars = env["env_vars"];
      if (!vars.is_object()) vars = nlohmann::json::object();
      std::string path = vars.value("SERVE_APP_PATH", "");
      vars["SERVE_APP_PATH"] = path.empty() ? dir : dir + ":" + path;
    };
    if (doc.contains("applications") && doc["applications"].is_array()) {
      for (auto& app : doc["applications"]) add(app);
    } else {
      add(doc);
    }
  }
  if (auto st = PutConfig(address, doc); !st.ok()) return Fail(std::string(st.message()));
  std::cout << "Sent deploy request successfully.\n"
            << " * Use `serve status` to check applications' statuses.\n"
            << " * Use `serve config` to see the current application config(s).\n";
  return 0;
}

int CmdConfig(const std::string& address, const std::string& name) {
  auto details = GetDetailsRest(address);
  if (!details.ok()) return Fail(std::string(details.status().message()));
  const nlohmann::json apps = details->value("applications", nlohmann::json::object());
  if (!name.empty()) {
    if (!apps.contains(name) || apps[name].value("deployed_app_config", nlohmann::json()).is_null()) {
      std::cout << "No config has been deployed for application \"" << name << "\".\n";
      return 0;
    }
    std::cout << config::AppConfigToYaml(apps[name]["deployed_app_config"]);
    return 0;
  }
  std::vector<std::string> docs;
  for (auto& [n, app] : apps.items()) {
    auto cfg = app.value("deployed_app_config", nlohmann::json());
    if (!cfg.is_null()) docs.push_back(config::AppConfigToYaml(cfg));
  }
  if (docs.empty()) {
    std::cout << "No configuration was found.\n";
    return 0;
  }
  for (size_t i = 0; i < docs.size(); ++i) std::cout << (i ? "\n---\n\n" : "") << docs[i];
  return 0;
}

int CmdStatus(const std::string& address, const std::string& name) {
  auto details = GetDetailsRest(address);
  if (!details.ok()) return Fail(std::string(details.status().message()));
  std::cout << FormatStatus(*details, name);
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

// Builds each application in a throw-away process (user code never runs in the CLI) and
// prints the full config with every deployment's options.
int CmdBuild(const std::vector<std::string>& targets, const std::string& app_dir,
             const std::string& output) {
  std::vector<config::BuiltApplication> apps;
  for (const auto& target : targets) {
    auto import_path = config::ParseImportPath(target);
    if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
    std::string cmd = SiblingBinary("serve-replica") + " --build --print --import-path '" +
                      target + "' --app-dir '" + app_dir + "'";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) return Fail("cannot run serve-replica");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
    int rc = ::pclose(pipe);
    if (rc != 0) return Fail("building '" + target + "' failed (see the message above)");
    auto graph = nlohmann::json::parse(out, nullptr, false);
    if (graph.is_discarded()) return Fail("building '" + target + "' printed: " + out);
    config::BuiltApplication app{target, {}};
    for (auto& node : graph["deployments"]) {
      auto cfg = config::ResolveDeploymentConfig(node["options"]);
      if (!cfg.ok()) return Fail(std::string(cfg.status().message()));
      app.deployments.push_back(config::ToJson(*cfg));
    }
    apps.push_back(std::move(app));
  }
  std::string yaml = config::FormatServeBuildYaml(apps);
  if (output.empty()) {
    std::cout << yaml;
  } else if (!WriteFileAtomic(output, yaml)) {
    return Fail("cannot write " + output);
  }
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"serve: run and manage serve applications"};
  app.require_subcommand(1);
  std::string temp_dir, address;
  auto add_temp = [&](CLI::App* cmd) {
    cmd->add_option("--temp-dir", temp_dir,
                    "root of session directories (default $SERVE_TEMP_DIR, else /tmp/serve)");
  };
  auto add_address = [&](CLI::App* cmd) {
    cmd->add_option("-a,--address", address,
                    "REST API address (default $SERVE_DASHBOARD_ADDRESS, "
                    "$RAY_DASHBOARD_ADDRESS, the local instance, http://localhost:8265)");
    add_temp(cmd);
  };
  auto add_http = [&](CLI::App* cmd, ClusterOptions& c) {
    c.http_host = EnvString("SERVE_HTTP_HOST", c.http_host);
    c.http_port = static_cast<int>(EnvDouble("SERVE_HTTP_PORT", c.http_port));
    c.dashboard_host = EnvString("SERVE_DASHBOARD_HOST", c.dashboard_host);
    c.dashboard_port = static_cast<int>(EnvDouble("SERVE_DASHBOARD_PORT", c.dashboard_port));
    cmd->add_option("--http-host", c.http_host, "HTTP host of the proxy ($SERVE_HTTP_HOST)");
    cmd->add_option("--http-port", c.http_port,
                    "HTTP port of the proxy (0: any free port; $SERVE_HTTP_PORT)");
    cmd->add_option("--dashboard-host", c.dashboard_host,
                    "host of the REST API ($SERVE_DASHBOARD_HOST)");
    cmd->add_option("--dashboard-port", c.dashboard_port,
                    "port of the REST API (0: any; $SERVE_DASHBOARD_PORT)");
  };

  RunArgs run;
  auto* run_cmd = app.add_subcommand("run", "Run an application or config file; block until Ctrl-C.");
  run_cmd->add_option("config_or_import_path", run.target, "config.yaml or module:app")->required();
  run_cmd->add_option("args", run.kv, "key=value builder arguments");
  run_cmd->add_option("-d,--app-dir", run.app_dir, "directory searched for lib<module>.so");
  run_cmd->add_option("--name", run.name, "application name (import paths only)");
  run_cmd->add_option("--route-prefix", run.route_prefix, "HTTP route prefix (import paths only)");
  bool strict = config::StrictConfigFromEnv();
  auto add_strict = [&](CLI::App* cmd) {
    cmd->add_flag("--strict", strict,
                  "reject unknown config fields instead of warning ($SERVE_STRICT_CONFIG=1)");
  };
  add_strict(run_cmd);
  add_http(run_cmd, run.cluster);
  add_temp(run_cmd);

  ClusterOptions start;
  std::string start_app_dir = ".";
  bool head = true;
  auto* start_cmd = app.add_subcommand("start", "Start a long-lived serve instance (detached).");
  start_cmd->add_flag("--head", head, "start the head node (the only mode supported)");
  add_http(start_cmd, start);
  start_cmd->add_option("--proxy-location", start.proxy_location)
      ->check(CLI::IsMember({"EveryNode", "HeadOnly", "Disabled"}));
  start_cmd->add_option("--grpc-port", start.grpc_port);
  start_cmd->add_option("-d,--app-dir", start_app_dir, "where applications' libraries are found");
  std::string start_session;
  start.redis_address = EnvString("SERVE_REDIS_ADDRESS", "");
  start_cmd->add_option("--redis-address", start.redis_address,
                        "HOST:PORT[/db]: keep the state in Redis (default $SERVE_REDIS_ADDRESS)");
  start_cmd->add_option("--redis-password", start.redis_password);
  start_cmd->add_option("--cluster-name", start.cluster_name, "key namespace in Redis");
  start_cmd->add_option("--session-dir", start_session,
                        "reuse this session directory (its file state store included)");
  add_temp(start_cmd);

  auto* stop_cmd = app.add_subcommand("stop", "Stop the serve instance and all its processes.");
  add_temp(stop_cmd);

  std::string deploy_target, deploy_name = "default", deploy_prefix = "/";
  std::vector<std::string> deploy_kv;
  auto* deploy_cmd = app.add_subcommand("deploy", "Deploy a config file or import path (async).");
  deploy_cmd->add_option("config_or_import_path", deploy_target)->required();
  deploy_cmd->add_option("args", deploy_kv, "key=value builder arguments");
  deploy_cmd->add_option("--name", deploy_name);
  deploy_cmd->add_option("--route-prefix", deploy_prefix);
  std::string deploy_app_dir;
  deploy_cmd->add_option("-d,--app-dir", deploy_app_dir,
                         "also look for lib<module>.so here (a directory on the instance's "
                         "machine; sent as runtime_env.env_vars.SERVE_APP_PATH)");
  add_strict(deploy_cmd);
  add_address(deploy_cmd);

  std::string name;
  auto* config_cmd = app.add_subcommand("config", "Print the deployed config(s).");
  config_cmd->add_option("-n,--name", name, "only this application");
  add_address(config_cmd);

  auto* status_cmd = app.add_subcommand("status", "Print the status of the applications.");
  status_cmd->add_option("-n,--name", name, "only this application");
  add_address(status_cmd);

  bool yes = false;
  auto* shutdown_cmd = app.add_subcommand("shutdown", "Delete every application.");
  shutdown_cmd->add_flag("-y,--yes", yes, "do not ask for confirmation");
  add_address(shutdown_cmd);

  std::vector<std::string> build_targets;
  std::string build_app_dir = ".", build_output;
  auto* build_cmd = app.add_subcommand("build", "Print a config file for import paths.");
  build_cmd->add_option("import_paths", build_targets)->required();
  build_cmd->add_option("-d,--app-dir", build_app_dir);
  build_cmd->add_option("-o,--output-path", build_output);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::string root = TempRoot(temp_dir);
  if (*run_cmd) {
    run.temp_dir = temp_dir;
    run.strict = strict;
    return CmdRun(run);
  }
  if (*start_cmd) {
    if (!head) return Fail("joining an existing cluster (worker nodes) is not supported yet");
    return CmdStart(start, temp_dir, start_app_dir, start_session);
  }
  if (*stop_cmd) return CmdStop(temp_dir);
  if (*deploy_cmd) {
    return CmdDeploy(deploy_target, deploy_kv, DashboardAddress(address, root), deploy_name,
                     deploy_prefix, deploy_app_dir, strict);
  }
  if (*config_cmd) return CmdConfig(DashboardAddress(address, root), name);
  if (*status_cmd) return CmdStatus(DashboardAddress(address, root), name);
  if (*shutdown_cmd) return CmdShutdown(DashboardAddress(address, root), yes);
  if (*build_cmd) return CmdBuild(build_targets, build_app_dir, build_output);
  return 1;
}

}  // namespace serve::cli

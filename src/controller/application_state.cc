#include "controller/application_state.h"

#include <cstring>
#include <filesystem>
#include <set>

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "config/deployment_config.h"
#include "config/logging_config.h"

namespace serve::controller {
namespace {

using Json = nlohmann::json;

// "exited with code 1" / "was killed by signal 11 (Segmentation fault)".
std::string ExitText(int exit_code) {
  if (exit_code < 0) {
    return "was killed by signal " + std::to_string(-exit_code) + " (" +
           std::string(strsignal(-exit_code)) + ")";
  }
  return "exited with code " + std::to_string(exit_code);
}

std::string LibraryStamp(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  auto mtime = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  return std::to_string(size) + "@" + std::to_string(mtime);
}

}  // namespace

ApplicationStateManager::ApplicationStateManager(const ControllerContext& context, Clock& clock,
                                                 Random& random,
                                                 DeploymentStateManager& deployments)
    : context_(context), clock_(clock), random_(random), deployments_(deployments),
      global_logging_config_(config::DefaultLoggingConfig()) {}

StartBuildAction ApplicationStateManager::MakeBuild(AppState& app) {
  app.build_log = context_.options.session_dir + "/logs/serve/build_" + app.name + "_" +
                  app.build_id + ".log";
  app.build_exit_code.reset();
  StartBuildAction a;
  a.app = app.name;
  a.build_id = app.build_id;
  v1::StartProcessRequest& req = a.request;
  req.set_tag(ProcessTag::Build(app.name).Encode());
  req.set_log_prefix("build_serve_application");
  req.set_binary("serve-replica");
  for (const std::string& arg :
       {std::string("--build"), std::string("--controller-address"), context_.address,
        std::string("--build-id"), app.build_id, std::string("--import-path"), app.import_path,
        std::string("--app-dir"), app.app_dir, std::string("--args-json"), app.args_json,
        std::string("--log-file"), app.build_log}) {
    req.add_args(arg);
  }
  for (auto& [k, v] : app.prepared_env.env_vars) {
    auto* kv = req.add_env();
    kv->set_key(k);
    kv->set_value(v);
  }
  if (!app.prepared_env.working_dir.empty()) req.set_working_dir(app.prepared_env.working_dir);
  return a;
}

absl::Status ApplicationStateManager::Deploy(const config::ServeDeployConfig& cfg,
                                             const std::string& source,
                                             const std::string& app_dir, Actions& actions) {
  if (shutting_down_) return absl::UnavailableError("serve is shutting down");
  std::set<std::string> names;
  for (const auto& a : cfg.applications) names.insert(a.name);
  // Route prefixes must stay unique across live applications.
  for (const auto& a : cfg.applications) {
    if (!a.route_prefix) continue;
    for (auto& [other_name, other] : apps_) {
      bool replaced = names.count(other_name) > 0 ||
                      (source == "declarative" && other.source == "declarative");
      if (!replaced && !other.deleting && other.route_prefix == a.route_prefix) {
        return absl::AlreadyExistsError("Prefix " + *a.route_prefix +
                                        " is being used by application \"" + other_name +
                                        "\". Failed to deploy application \"" + a.name + "\".");
      }
    }
  }
  std::map<std::string, PreparedRuntimeEnv> envs;
  for (const auto& a : cfg.applications) {
    auto env = PrepareRuntimeEnv(a.runtime_env, context_.options.session_dir);
    if (!env.ok()) {
      return absl::InvalidArgumentError("application '" + a.name +
                                        "': " + std::string(env.status().message()));
    }
    envs[a.name] = *env;
  }
  if (source == "declarative") {
    deployments_.SetTargetCapacity(cfg.target_capacity);
    set_global_logging_config(cfg.logging_config);
  }
  for (const auto& a : cfg.applications) {
    AppState& app = apps_[a.name];
    std::string code_key =
        Json{{"import_path", a.import_path}, {"runtime_env", a.runtime_env}, {"args", a.args}}
            .dump();
    bool reuse = !app.graph.empty() && !app.deleting && app.code_key == code_key &&
                 !app.build_failed && (app_dir.empty() || app_dir == app.app_dir);
    if (reuse) {
      Json graph = Json::from_msgpack(app.graph, true, false);
      reuse = !graph.is_discarded() &&
              LibraryStamp(graph.value("library_path", "")) == app.library_stamp;
    }
    app.name = a.name;
    app.route_prefix = a.route_prefix;
    app.import_path = a.import_path;
    app.args_json = a.args.dump();
    app.runtime_env = a.runtime_env;
    app.prepared_env = envs[a.name];
    if (!app_dir.empty()) app.app_dir = app_dir;
    if (app.app_dir.empty()) app.app_dir = context_.options.app_dir;
    if (!app.prepared_env.working_dir.empty()) app.app_dir = app.prepared_env.working_dir;
    app.source = source;
    app.submitted = source == "declarative" ? a.submitted : Json(nullptr);
    app.overrides = a.deployments;
    app.logging_config = a.logging_config;
    app.code_key = code_key;
    app.deleting = false;
    app.last_deployed_time_s = clock_.UnixNow();
    if (reuse) {
      spdlog::info("Updating application '{}' in place.", a.name);
      app.build_failed = false;
      ApplyGraph(app, app.graph);
      continue;
    }
    app.building = true;
    app.build_failed = false;
    app.build_error.clear();
    app.build_pid = 0;
    app.build_id = random_.Id(12);
    spdlog::info("Deploying application '{}' from '{}'.", a.name, a.import_path);
    actions.push_back(MakeBuild(app));
  }
  if (source == "declarative") {
    for (auto& [name, app] : apps_) {
      if (app.source == "declarative" && !names.count(name) && !app.deleting) {
        spdlog::info("Application '{}' is not in the new config; deleting it.", name);
        DeleteApp(app);
      }
    }
  }
  return absl::OkStatus();
}

void ApplicationStateManager::ApplyGraph(AppState& app, const std::string& graph_msgpack) {
  Json graph = Json::from_msgpack(graph_msgpack, true, false);
  auto fail = [&](const std::string& why) {
    app.build_failed = true;
    app.build_error = why;
    spdlog::error("Application '{}' failed to deploy: {}", app.name, why);
  };
  if (graph.is_discarded() || !graph.contains("deployments")) {
    fail("the build process returned a malformed application graph");
    return;
  }
  app.graph = graph_msgpack;
  std::string library = graph.value("library_path", "");
  app.library_stamp = LibraryStamp(library);
  std::set<std::string> in_code;
  for (const Json& node : graph["deployments"]) in_code.insert(node["options"].value("name", ""));
  for (const auto& o : app.overrides) {
    if (!in_code.count(o.name)) {
      std::string known;
      for (auto& n : in_code) known += (known.empty() ? "" : ", ") + n;
      fail("Got config override for nonexistent deployment '" + o.name + "' in application '" +
           app.name + "' (deployments: " + known + ").");
      return;
    }
  }
  std::vector<std::string> names;
  std::map<std::string, DeploymentSpec> incoming;
  for (const Json& node : graph["deployments"]) {
    Json options = node.value("options", Json::object());
    for (const auto& o : app.overrides) {
      if (o.name == options.value("name", "")) {
        options = config::MergeDeploymentOptions(options, o.fields);
      }
    }
    auto cfg = config::ResolveDeploymentConfig(options);
    if (!cfg.ok()) {
      fail(std::string(cfg.status().message()));
      return;
    }
    // Logging: the deployment's, else the application's, else the top-level config's.
    cfg->logging_config = config::ResolveLoggingConfig(cfg->logging_config, app.logging_config,
                                                       global_logging_config_set_);
    DeploymentSpec d;
    d.cfg = *cfg;
    d.factory_key = node.value("factory", "");
    std::vector<std::uint8_t> args = Json::to_msgpack(node.value("init_args", Json::array()));
    d.init_args.assign(args.begin(), args.end());
    d.library_path = library;
    d.app_dir = app.app_dir;
    d.working_dir = app.prepared_env.working_dir;
    d.env = app.prepared_env.env_vars;
    d.ingress = cfg->name == graph.value("ingress", "");
    Json heavy = {{"factory", d.factory_key},
                  {"library", library},
                  {"stamp", app.library_stamp},
                  {"actor", d.cfg.ray_actor_options},
                  {"max_per_node", d.cfg.max_replicas_per_node ? *d.cfg.max_replicas_per_node : 0},
                  {"env", d.env},
                  {"working_dir", d.working_dir}};
    d.fingerprint = heavy.dump() + d.init_args;
    Json light = {{"user_config", d.cfg.user_config ? *d.cfg.user_config : Json(nullptr)},
                  {"max_ongoing_requests", d.cfg.max_ongoing_requests},
                  {"logging_config", *d.cfg.logging_config}};
    d.config_fingerprint = light.dump();
    names.push_back(cfg->name);
    incoming.emplace(cfg->name, std::move(d));
  }
  deployments_.ApplyApp(app.name, std::move(incoming), app.deployments);
  app.deployments = names;
  app.ingress = graph.value("ingress", "");
  spdlog::info("Application '{}': deployments [{}], ingress '{}'.", app.name,
               fmt::join(names, ", "), app.ingress);
}

void ApplicationStateManager::set_global_logging_config(const std::optional<Json>& lc) {
  global_logging_config_set_ = lc;
  global_logging_config_ = config::ResolveLoggingConfig(std::nullopt, std::nullopt, lc);
}

void ApplicationStateManager::DeleteApp(AppState& app) {
  app.deleting = true;
  app.building = false;
  for (const std::string& d : app.deployments) deployments_.Delete({app.name, d});
}

absl::Status ApplicationStateManager::Delete(const std::string& name) {
  auto it = apps_.find(name);
  if (it == apps_.end()) {
    return absl::NotFoundError("Application \"" + name + "\" does not exist.");
  }
  spdlog::info("Deleting application '{}'.", name);
  DeleteApp(it->second);
  return absl::OkStatus();
}

void ApplicationStateManager::DeleteAll() {
  for (auto& [name, app] : apps_) DeleteApp(app);
}

void ApplicationStateManager::OnBuildResult(const v1::BuildResult& msg) {
  for (auto& [name, app] : apps_) {
    if (!app.building || app.build_id != msg.build_id()) continue;
    app.building = false;
    if (msg.ok()) {
      ApplyGraph(app, msg.graph_msgpack());
    } else {
      app.build_failed = true;
      app.build_error = msg.error();
      spdlog::error("Application '{}' failed to build: {}", name, msg.error());
    }
  }
}

void ApplicationStateManager::OnBuildProcessStarted(const std::string& app_name,
                                                    const std::string& build_id,
                                                    const absl::StatusOr<int>& pid) {
  std::optional<int> early_exit;
  if (pid.ok()) {
    if (auto e = early_build_exits_.find(*pid); e != early_build_exits_.end()) {
      early_exit = e->second;
      early_build_exits_.erase(e);
    }
  }
  auto it = apps_.find(app_name);
  if (it == apps_.end() || it->second.build_id != build_id || !it->second.building) return;
  if (pid.ok()) {
    it->second.build_pid = *pid;
    if (early_exit) OnBuildProcessExited(it->second, *early_exit);
    return;
  }
  it->second.building = false;
  it->second.build_failed = true;
  it->second.build_error =
      "cannot start the build process: " + std::string(pid.status().message());
}

void ApplicationStateManager::OnBuildExit(const std::string& app_name, int pid, int exit_code) {
  auto it = apps_.find(app_name);
  if (it == apps_.end() || !it->second.building) return;
  if (it->second.build_pid == 0) {
    // The agent's start report (with the pid) has not arrived yet: keep the exit until it does.
    if (early_build_exits_.size() >= 64) early_build_exits_.clear();
    early_build_exits_[pid] = exit_code;
    return;
  }
  if (it->second.build_pid != pid) return;
  OnBuildProcessExited(it->second, exit_code);
}

void ApplicationStateManager::OnBuildProcessExited(AppState& app, int exit_code) {
  if (app.build_exit_code) return;
  app.build_exit_code = exit_code;
  app.build_exited_at = clock_.Now();
}

void ApplicationStateManager::Step() {
  double now = clock_.Now();
  for (auto& [name, app] : apps_) {
    if (!app.building || !app.build_exit_code || now - app.build_exited_at < kLateBuildResultS) {
      continue;
    }
    app.building = false;
    app.build_failed = true;
    app.build_error = "The application builder process for '" + app.import_path + "' " +
                      ExitText(*app.build_exit_code) + " before reporting a result; its log: " +
                      app.build_log;
    spdlog::error("Application '{}' failed to build: {}", name, app.build_error);
  }
  for (auto it = apps_.begin(); it != apps_.end();) {
    AppState& app = it->second;
    bool remaining = false;
    for (auto& d : app.deployments) remaining |= deployments_.Get({app.name, d}) != nullptr;
    if (app.deleting && !remaining) {
      spdlog::info("Application '{}' deleted.", app.name);
      it = apps_.erase(it);
    } else {
      ++it;
    }
  }
}

void ApplicationStateManager::Restore(AppState app, bool build_running, Actions& actions) {
  // A build that died with the old controller is started again.
  if (app.building && !build_running) actions.push_back(MakeBuild(app));
  std::string name = app.name;
  apps_[name] = std::move(app);
}

}  // namespace serve::controller

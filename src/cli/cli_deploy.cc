#include "cli/cli_internal.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <utility>

#include "cli/rest_client.h"
#include "cli/status_format.h"
#include "common/util.h"
#include "config/deployment_config.h"
#include "config/import_path.h"
#include "config/schema.h"

namespace serve::cli::detail {

int CmdDeploy(const std::string& target, const std::vector<std::string>& kv_items,
              const std::string& address, const std::string& name,
              const std::string& route_prefix, const std::string& app_dir, bool strict,
              const nlohmann::json& runtime_env) {
  auto kv = ParseKeyValues(kv_items);
  if (!kv.ok()) return Fail(std::string(kv.status().message()));
  nlohmann::json doc;
  if (LooksLikeConfigFile(target)) {
    if (!kv->empty()) return Fail("Application arguments cannot be specified for a config file.");
    auto loaded = LoadConfigDocument(target, strict);
    if (!loaded.ok()) return Fail(std::string(loaded.status().message()));
    doc = *loaded;
    if (!runtime_env.empty()) {
      std::cerr << "Warning: the runtime env flags are ignored for config files; set "
                   "runtime_env in the config instead.\n";
    }
  } else {
    auto import_path = config::ParseImportPath(target);
    if (!import_path.ok()) return Fail(std::string(import_path.status().message()));
    doc = {{"applications",
            {{{"name", name}, {"route_prefix", route_prefix}, {"import_path", target},
              {"args", *kv}}}}};
    if (!runtime_env.empty()) doc["applications"][0]["runtime_env"] = runtime_env;
  }
  if (!app_dir.empty()) {
    std::string dir = AbsoluteDir(app_dir);
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      return Fail("--app-dir " + dir + " is not a directory.");
    }
    auto add = [&](nlohmann::json& app) { AddAppPath(app, dir); };
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

int CmdBuild(const std::vector<std::string>& targets, const std::string& app_dir,
             const std::string& output, const std::vector<std::string>& grpc_services) {
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
  std::string yaml = config::FormatServeBuildYaml(apps, grpc_services);
  if (output.empty()) {
    std::cout << yaml;
  } else if (!WriteFileAtomic(output, yaml)) {
    return Fail("cannot write " + output);
  }
  return 0;
}

}  // namespace serve::cli::detail

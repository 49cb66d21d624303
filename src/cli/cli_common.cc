#include "cli/cli_internal.h"

#include <cctype>
#include <filesystem>
#include <iostream>
#include <set>
#include <string_view>

#include "cli/rest_client.h"
#include "common/util.h"
#include "config/limits.h"
#include "config/schema.h"

namespace serve::cli::detail {
namespace {

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

// Prints each unknown-field warning of a config file to stderr.
void PrintWarnings(const std::string& path, const std::vector<std::string>& warnings) {
  for (const auto& w : warnings) std::cerr << "Warning: " << path << ": " << w << "\n";
}

}  // namespace

std::optional<int> ReadyProxyPort(const nlohmann::json& details) {
  // The head node's proxy: http_options.port is the port it bound.
  bool healthy = false;
  const nlohmann::json proxies = details.value("proxies", nlohmann::json::object());
  const nlohmann::json nodes = details.value("nodes", nlohmann::json::object());
  for (auto& [node, p] : proxies.items()) {
    bool head = !nodes.contains(node) || nodes[node].value("is_head_node", false);
    healthy |= head && p.value("status", "") == "HEALTHY";
  }
  if (!healthy) return std::nullopt;
  int port = details.value("http_options", nlohmann::json::object()).value("port", 0);
  if (port <= 0) return std::nullopt;  // asked for port 0 and the real one is not known yet
  return port;
}

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

absl::StatusOr<nlohmann::json> LoadConfigDocument(const std::string& path, bool strict) {
  std::error_code ec;
  if (auto size = std::filesystem::file_size(path, ec);
      !ec && size > config::limits::kMaxDocumentBytes) {
    return absl::InvalidArgumentError(path + ": config is " + std::to_string(size) +
                                      " bytes; the limit is " +
                                      std::to_string(config::limits::kMaxDocumentBytes) + " bytes");
  }
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

bool RestReachable(const std::string& dashboard, double timeout_s) {
  auto resp = RestCall("GET", dashboard + "/api/ray/version", "", timeout_s);
  return resp.ok() && resp->status == 200;
}

absl::StatusOr<nlohmann::json> RuntimeEnvFromFlags(const std::string& file,
                                                   const std::string& json_text,
                                                   const std::string& working_dir) {
  if (!file.empty() && !json_text.empty()) {
    return absl::InvalidArgumentError("Only one of --runtime-env and --runtime-env-json can be given.");
  }
  nlohmann::json env = nlohmann::json::object();
  if (!file.empty()) {
    auto text = ReadFile(file);
    if (!text) return absl::NotFoundError("Cannot read runtime env file '" + file + "'.");
    auto doc = config::YamlToJson(*text);
    if (!doc.ok()) {
      return absl::InvalidArgumentError(file + ": " + std::string(doc.status().message()));
    }
    env = *doc;
  } else if (!json_text.empty()) {
    std::string why;
    env = config::limits::ParseBoundedJson(json_text, &why);
    if (env.is_discarded()) {
      return absl::InvalidArgumentError("--runtime-env-json is not valid JSON: " + why + ".");
    }
  }
  if (env.is_null()) env = nlohmann::json::object();
  if (!env.is_object()) return absl::InvalidArgumentError("The runtime env must be a JSON object.");
  if (!working_dir.empty()) env["working_dir"] = working_dir;
  if (env.contains("working_dir") && env["working_dir"].is_string()) {
    std::string wd = env["working_dir"];
    if (wd.find("://") == std::string::npos) env["working_dir"] = AbsoluteDir(wd);
  }
  return env;
}

void MergeRuntimeEnv(nlohmann::json& app, const nlohmann::json& defaults) {
  if (!app.is_object() || !defaults.is_object() || defaults.empty()) return;
  nlohmann::json& env = app["runtime_env"];
  if (!env.is_object()) env = nlohmann::json::object();
  for (auto& [key, value] : defaults.items()) {
    if (key == "env_vars" && value.is_object() && env.contains("env_vars") &&
        env["env_vars"].is_object()) {
      for (auto& [k, v] : value.items()) {
        if (!env["env_vars"].contains(k)) env["env_vars"][k] = v;
      }
    } else if (!env.contains(key)) {
      env[key] = value;
    }
  }
}

void AddAppPath(nlohmann::json& app, const std::string& dir) {
  if (!app.is_object()) return;
  nlohmann::json& env = app["runtime_env"];
  if (!env.is_object()) env = nlohmann::json::object();
  nlohmann::json& vars = env["env_vars"];
  if (!vars.is_object()) vars = nlohmann::json::object();
  std::string path = vars.value("SERVE_APP_PATH", "");
  vars["SERVE_APP_PATH"] = path.empty() ? dir : dir + ":" + path;
}

absl::Status PutMerged(const std::string& dashboard, const nlohmann::json& add,
                       const std::vector<std::string>& remove) {
  auto details = GetDetailsRest(dashboard);
  if (!details.ok()) return details.status();
  std::set<std::string> skip(remove.begin(), remove.end());
  for (const auto& app : add) skip.insert(app.value("name", "default"));
  nlohmann::json apps = nlohmann::json::array();
  const nlohmann::json current = details->value("applications", nlohmann::json::object());
  for (auto& [name, app] : current.items()) {
    if (app.value("source", "") != "declarative" || skip.count(name) ||
        app.value("status", "") == "DELETING") {
      continue;
    }
    nlohmann::json cfg = app.value("deployed_app_config", nlohmann::json());
    if (cfg.is_object()) apps.push_back(cfg);
  }
  for (const auto& app : add) apps.push_back(app);
  nlohmann::json doc = {{"applications", apps}};
  nlohmann::json tc = details->value("target_capacity", nlohmann::json());
  if (tc.is_number()) doc["target_capacity"] = tc;
  return PutConfig(dashboard, doc);
}

}  // namespace serve::cli::detail

#include "cli/status_format.h"

#include <regex>

#include <yaml-cpp/yaml.h>

namespace serve::cli {
namespace {

std::string StripAnsi(const std::string& s) {
  static const std::regex ansi("\x1b\\[[0-9;]*[A-Za-z]");
  return std::regex_replace(s, ansi, "");
}

void EmitString(YAML::Emitter& out, const std::string& s) {
  std::string clean = StripAnsi(s);
  if (clean.find('\n') != std::string::npos) {
    // Emitted as a "|-" literal block (see FormatStatus): trailing newlines are not kept.
    while (!clean.empty() && clean.back() == '\n') clean.pop_back();
    out << YAML::Literal << clean;
  } else {
    out << YAML::SingleQuoted << clean;
  }
}

void EmitApp(YAML::Emitter& out, const nlohmann::json& app) {
  out << YAML::BeginMap;
  out << YAML::Key << "status" << YAML::Value << app.value("status", "");
  out << YAML::Key << "message" << YAML::Value;
  EmitString(out, app.value("message", ""));
  out << YAML::Key << "last_deployed_time_s" << YAML::Value
      << app.value("last_deployed_time_s", 0.0);
  out << YAML::Key << "deployments" << YAML::Value << YAML::BeginMap;
  const nlohmann::json deployments = app.value("deployments", nlohmann::json::object());
  for (auto& [name, dep] : deployments.items()) {
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "status" << YAML::Value << dep.value("status", "");
    out << YAML::Key << "status_trigger" << YAML::Value << dep.value("status_trigger", "");
    out << YAML::Key << "replica_states" << YAML::Value << YAML::BeginMap;
    std::map<std::string, int> counts;
    for (auto& r : dep.value("replicas", nlohmann::json::array())) {
      ++counts[r.value("state", "UNKNOWN")];
    }
    for (auto& [state, n] : counts) out << YAML::Key << state << YAML::Value << n;
    out << YAML::EndMap;
    out << YAML::Key << "message" << YAML::Value;
    EmitString(out, dep.value("message", ""));
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  out << YAML::EndMap;
}

// yaml-cpp writes literal blocks as "|" (keep one trailing newline); our messages have none,
// so mark them "|-" as PyYAML does.
std::string StripLiteral(std::string yaml) {
  static const std::regex literal(": \\|\n");
  return std::regex_replace(yaml, literal, ": |-\n");
}

}  // namespace

std::string FormatStatus(const nlohmann::json& details, const std::string& app_name) {
  YAML::Emitter out;
  out.SetFloatPrecision(16);
  out.SetDoublePrecision(16);
  out.SetNullFormat(YAML::LowerNull);
  auto apps = details.value("applications", nlohmann::json::object());
  if (!app_name.empty()) {
    if (!apps.contains(app_name)) return "Application \"" + app_name + "\" does not exist.\n";
    EmitApp(out, apps[app_name]);
    return StripLiteral(std::string(out.c_str()) + "\n");
  }
  out << YAML::BeginMap;
  out << YAML::Key << "proxies" << YAML::Value << YAML::BeginMap;
  const nlohmann::json proxies = details.value("proxies", nlohmann::json::object());
  for (auto& [node, p] : proxies.items()) {
    out << YAML::Key << node << YAML::Value << p.value("status", "");
    // Why a proxy is not HEALTHY, as a comment: the document keeps Ray's shape.
    std::string message = StripAnsi(p.value("message", ""));
    if (!message.empty() && p.value("status", "") != "HEALTHY") {
      for (char& c : message) {
        if (c == '\n' || c == '\r') c = ' ';
      }
      out << YAML::Comment(message);
    }
  }
  out << YAML::EndMap;
  out << YAML::Key << "applications" << YAML::Value << YAML::BeginMap;
  for (auto& [name, app] : apps.items()) {
    out << YAML::Key << name << YAML::Value;
    EmitApp(out, app);
  }
  out << YAML::EndMap;
  out << YAML::Key << "target_capacity" << YAML::Value;
  auto tc = details.value("target_capacity", nlohmann::json(nullptr));
  if (tc.is_null()) {
    out << YAML::Null;
  } else {
    out << tc.get<double>();
  }
  // A cluster with worker nodes also lists its nodes (not in Ray's output, which has
  // `ray status` for that); a single node keeps Ray's shape exactly.
  const nlohmann::json nodes = details.value("nodes", nlohmann::json::object());
  if (nodes.size() > 1) {
    out << YAML::Key << "nodes" << YAML::Value << YAML::BeginMap;
    for (auto& [id, n] : nodes.items()) {
      out << YAML::Key << id << YAML::Value << YAML::BeginMap;
      out << YAML::Key << "node_ip" << YAML::Value << n.value("node_ip", "");
      out << YAML::Key << "state" << YAML::Value << n.value("state", "");
      out << YAML::Key << "is_head_node" << YAML::Value << n.value("is_head_node", false);
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return StripLiteral(std::string(out.c_str()) + "\n");
}

}  // namespace serve::cli

#pragma once

// Typed names shared by the controller, proxies, routers and replicas, each with one
// encoder and one decoder: deployment ids, long-poll keys and the process tags the node agent
// reports back.

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace serve {

/// A deployment of an application. Encoded as "app#deployment" (router and metrics keys).
struct DeploymentId {
  std::string app;
  std::string name;

  std::string Key() const { return app + "#" + name; }
  /// Inverse of Key(); nullopt without a '#'. The application name may not contain '#'.
  static std::optional<DeploymentId> FromKey(std::string_view key);
  auto operator<=>(const DeploymentId&) const = default;
};

/// Long-poll keys (spec §7).
inline constexpr std::string_view kRouteTableKey = "ROUTE_TABLE";
/// The top-level logging_config, which proxies apply to their own log.
inline constexpr std::string_view kGlobalLoggingConfigKey = "GLOBAL_LOGGING_CONFIG";
/// "DEPLOYMENT_TARGETS:app#deployment": the running replicas of one deployment.
std::string TargetsKey(const DeploymentId& id);
/// The deployment of a targets key; nullopt for any other key.
std::optional<DeploymentId> ParseTargetsKey(std::string_view key);
/// "PROXY_STATE:<node id>": whether that node's proxy is draining (spec §8.1).
std::string ProxyStateKey(const std::string& node_id);

/// The tag a process is started with; the agent reports it back on exit and in listings.
struct ProcessTag {
  enum class Kind { kOther, kProxy, kReplica, kBuild };
  Kind kind = Kind::kOther;
  std::string id;  ///< replica id (kReplica), application name (kBuild), else empty

  static ProcessTag Proxy() { return {Kind::kProxy, ""}; }
  static ProcessTag Replica(std::string replica_id) { return {Kind::kReplica, std::move(replica_id)}; }
  static ProcessTag Build(std::string app) { return {Kind::kBuild, std::move(app)}; }

  /// "proxy", "replica:<id>", "build:<app>"; kOther keeps its id verbatim.
  std::string Encode() const;
  static ProcessTag Parse(std::string_view tag);
  bool operator==(const ProcessTag&) const = default;
};

}  // namespace serve

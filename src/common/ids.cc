#include "common/ids.h"

namespace serve {
namespace {
constexpr std::string_view kTargetsPrefix = "DEPLOYMENT_TARGETS:";
constexpr std::string_view kReplicaPrefix = "replica:";
constexpr std::string_view kBuildPrefix = "build:";
constexpr std::string_view kProxyTag = "proxy";
}  // namespace

std::optional<DeploymentId> DeploymentId::FromKey(std::string_view key) {
  auto hash = key.find('#');
  if (hash == std::string_view::npos) return std::nullopt;
  return DeploymentId{std::string(key.substr(0, hash)), std::string(key.substr(hash + 1))};
}

std::string TargetsKey(const DeploymentId& id) {
  return std::string(kTargetsPrefix) + id.Key();
}

std::optional<DeploymentId> ParseTargetsKey(std::string_view key) {
  if (key.substr(0, kTargetsPrefix.size()) != kTargetsPrefix) return std::nullopt;
  return DeploymentId::FromKey(key.substr(kTargetsPrefix.size()));
}

std::string ProxyStateKey(const std::string& node_id) { return "PROXY_STATE:" + node_id; }

std::string ProcessTag::Encode() const {
  switch (kind) {
    case Kind::kProxy: return std::string(kProxyTag);
    case Kind::kReplica: return std::string(kReplicaPrefix) + id;
    case Kind::kBuild: return std::string(kBuildPrefix) + id;
    case Kind::kOther: break;
  }
  return id;
}

ProcessTag ProcessTag::Parse(std::string_view tag) {
  if (tag == kProxyTag) return Proxy();
  if (tag.substr(0, kReplicaPrefix.size()) == kReplicaPrefix) {
    return Replica(std::string(tag.substr(kReplicaPrefix.size())));
  }
  if (tag.substr(0, kBuildPrefix.size()) == kBuildPrefix) {
    return Build(std::string(tag.substr(kBuildPrefix.size())));
  }
  return {Kind::kOther, std::string(tag)};
}

}  // namespace serve

#include "controller/instance_details.h"

#include <utility>
#include <vector>

#include "config/deployment_config.h"
#include "controller/status.h"

namespace serve::controller {
namespace {

using Json = nlohmann::json;

Json DeploymentDetails(const DeploymentState& dep, const NodeTable& nodes) {
  Json replicas = Json::array();
  for (auto& [id, r] : dep.replicas) {
    replicas.push_back({{"node_id", r.node_id},
                        {"node_ip", nodes.IpOf(r.node_id)},
                        {"node_instance_id", ""},
                        {"actor_id", ""},
                        {"actor_name", "SERVE_REPLICA::" + dep.id.Key() + "#" + r.id},
                        {"worker_id", ""},
                        {"log_file_path", r.log_file},
                        {"replica_id", r.id},
                        {"state", ToString(r.state, r.updating, r.migrating)},
                        {"pid", r.pid},
                        {"start_time_s", r.start_time_s}});
    if (!r.gpu_ids.empty()) replicas.back()["gpu_ids"] = r.gpu_ids;
    if (auto m = dep.multiplexed_model_ids.find(r.id); m != dep.multiplexed_model_ids.end()) {
      replicas.back()["multiplexed_model_ids"] = m->second;
    }
  }
  return {{"name", dep.id.name},
          {"status", ToString(dep.status.status)},
          {"status_trigger", ToString(dep.status.trigger)},
          {"message", dep.message},
          {"deployment_config", config::ToJson(dep.spec.cfg)},
          {"target_num_replicas", dep.deleting ? 0 : dep.target_num_replicas},
          {"required_resources", DemandFromActorOptions(dep.spec.cfg.ray_actor_options)},
          {"replicas", replicas}};
}

}  // namespace

AppStatus ApplicationStatus(const AppState& app, const DeploymentStateManager& deployments,
                            std::string* message) {
  if (app.deleting) return AppStatus::kDeleting;
  if (app.build_failed) {
    *message = app.build_error;
    return AppStatus::kDeployFailed;
  }
  if (app.building) return AppStatus::kDeploying;
  std::vector<std::pair<std::string, DeploymentStatusInfo>> statuses;
  for (auto& dname : app.deployments) {
    if (const DeploymentState* dep = deployments.Get({app.name, dname})) {
      statuses.emplace_back(dname, dep->status);
    }
  }
  return DeriveAppStatus(statuses, message);
}

Json InstanceDetails(const ControllerContext& context, const ProxyStateManager& proxies,
                     const ApplicationStateManager& apps,
                     const DeploymentStateManager& deployments, const std::string& api_type,
                     const NodeTable& nodes, const Scheduler& scheduler) {
  const ControllerOptions& o = context.options;
  const std::string node_ip = nodes.IpOf(o.node_id);
  auto tc = deployments.target_capacity();
  Json details = {
      {"controller_info",
       {{"node_id", o.node_id},
        {"node_ip", node_ip},
        {"node_instance_id", ""},
        {"actor_id", ""},
        {"actor_name", "SERVE_CONTROLLER_ACTOR"},
        {"worker_id", ""},
        {"log_file_path", context.log_file}}},
      {"proxy_location", o.proxy_location},
      {"http_options",
       {{"host", o.http_host},
        {"port", o.http_port},
        {"root_path", o.root_path},
        {"request_timeout_s", o.request_timeout_s < 0 ? Json(nullptr) : Json(o.request_timeout_s)},
        {"keep_alive_timeout_s", o.keep_alive_timeout_s}}},
      {"grpc_options",
       {{"port", o.grpc_port},
        {"grpc_servicer_functions", o.grpc_servicer_functions},
        {"request_timeout_s",
         o.grpc_request_timeout_s < 0 ? Json(nullptr) : Json(o.grpc_request_timeout_s)}}},
      {"proxies", Json::object()},
      {"nodes", Json::object()},
      {"deploy_mode", "MULTI_APP"},
      {"applications", Json::object()},
      {"target_capacity", tc ? Json(*tc) : Json(nullptr)}};
  for (auto& [node, p] : proxies.proxies()) {
    details["proxies"][node] = {{"node_id", node},
                                {"node_ip", nodes.IpOf(node)},
                                {"node_instance_id", ""},
                                {"actor_id", ""},
                                {"actor_name", "SERVE_PROXY_ACTOR-" + node},
                                {"worker_id", ""},
                                {"log_file_path", p.log_file},
                                {"status", p.status},
                                {"message", p.message},
                                {"pid", p.pid},
                                {"http_port", p.http_port}};
    if (p.http_port > 0 && node == o.node_id) details["http_options"]["port"] = p.http_port;
  }
  // Not in Ray's schema (Ray lists nodes in its own API): the cluster's nodes.
  for (const NodeInfo* n : nodes.Ordered()) {
    Json node = {{"node_id", n->id},
                 {"node_ip", n->ip},
                 {"is_head_node", n->head},
                 {"state", ToString(n->status)},
                 {"agent_address", n->agent_address},
                 {"labels", n->labels},
                 {"resources_total", n->unlimited ? Json::object() : Json(n->resources)},
                 {"resources_available", Json::object()}};
    if (!n->unlimited && n->status == NodeStatus::kAlive) {
      node["resources_available"] = scheduler.Available(n->id);
    }
    if (!n->death_reason.empty()) node["death_reason"] = n->death_reason;
    details["nodes"][n->id] = std::move(node);
  }
  for (auto& [name, app] : apps.apps()) {
    if (!api_type.empty() && app.source != api_type) continue;
    Json a = {{"name", name},
              {"route_prefix", app.route_prefix ? Json(*app.route_prefix) : Json(nullptr)},
              {"docs_path", nullptr},
              {"message", ""},
              {"last_deployed_time_s", app.last_deployed_time_s},
              {"deployed_app_config", app.submitted},
              {"source", app.source},
              {"ingress_deployment", app.ingress},
              {"deployments", Json::object()},
              {"external_scaler_enabled", false}};
    for (auto& dname : app.deployments) {
      const DeploymentState* dep = deployments.Get({name, dname});
      if (dep == nullptr) continue;
      a["deployments"][dname] = DeploymentDetails(*dep, nodes);
    }
    std::string message;
    AppStatus status = ApplicationStatus(app, deployments, &message);
    a["status"] = ToString(status);
    a["message"] = message;
    details["applications"][name] = std::move(a);
  }
  return details;
}

}  // namespace serve::controller

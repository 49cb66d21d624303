#include "controller/endpoint_state.h"

#include "common/ids.h"

namespace serve::controller {

v1::Update RouteTableObject(const std::map<std::string, AppState>& apps) {
  v1::Update routes;
  routes.set_key(std::string(kRouteTableKey));
  auto* table = routes.mutable_route_table();
  for (auto& [name, app] : apps) {
    if (app.deleting || !app.route_prefix || app.ingress.empty()) continue;
    auto* e = table->add_routes();
    e->set_route_prefix(*app.route_prefix);
    e->set_app_name(name);
    e->set_deployment(app.ingress);
  }
  return routes;
}

v1::Update TargetsObject(const DeploymentState& dep, const NodeTable& nodes) {
  v1::Update u;
  u.set_key(TargetsKey(dep.id));
  auto* t = u.mutable_targets();
  t->set_is_available(!dep.terminally_failed);
  t->set_max_queued_requests(dep.spec.cfg.max_queued_requests);
  if (const auto& as = dep.spec.cfg.autoscaling_config) {
    auto* m = t->mutable_autoscaling();
    m->set_metrics_interval_s(as->metrics_interval_s);
    m->set_look_back_period_s(as->look_back_period_s);
    m->set_aggregation_function(as->aggregation_function);
  }
  for (auto& [id, r] : dep.replicas) {
    if (r.state != ReplicaState::kRunning) continue;
    auto* rr = t->add_replicas();
    rr->set_replica_id(r.id);
    rr->set_app_name(dep.id.app);
    rr->set_deployment(dep.id.name);
    rr->set_node_id(r.node_id);
    rr->set_node_ip(nodes.IpOf(r.node_id));
    rr->set_data_address(r.data_address);
    rr->set_max_ongoing_requests(dep.spec.cfg.max_ongoing_requests);
    rr->set_pid(r.pid);
    if (auto m = dep.multiplexed_model_ids.find(r.id); m != dep.multiplexed_model_ids.end()) {
      for (const auto& model : m->second) rr->add_multiplexed_model_ids(model);
    }
  }
  return u;
}

std::map<std::string, v1::Update> LongPollObjects(const ApplicationStateManager& apps,
                                                  const DeploymentStateManager& deployments,
                                                  const NodeTable& nodes,
                                                  const ProxyStateManager& proxies) {
  std::map<std::string, v1::Update> objects;
  objects[std::string(kRouteTableKey)] = RouteTableObject(apps.apps());
  v1::Update logging;
  logging.set_key(std::string(kGlobalLoggingConfigKey));
  logging.set_logging_config_json(apps.global_logging_config().dump());
  objects[logging.key()] = std::move(logging);
  for (auto& [id, dep] : deployments.deployments()) {
    v1::Update u = TargetsObject(dep, nodes);
    objects[u.key()] = std::move(u);
  }
  for (auto& [node, p] : proxies.proxies()) {
    v1::Update u;
    u.set_key(ProxyStateKey(node));
    u.mutable_proxy_state()->set_draining(p.status == "DRAINING");
    objects[u.key()] = std::move(u);
  }
  return objects;
}

}  // namespace serve::controller

#include "controller/checkpoint.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/ids.h"
#include "config/deployment_config.h"

namespace serve::controller {
namespace {

using Json = nlohmann::json;

std::string Bytes(const Json &j) {
  const auto &b = j.get_binary();
  return std::string(b.begin(), b.end());
}
Json Binary(const std::string &s) { return Json::binary({s.begin(), s.end()}); }

Json EncodeApp(const AppState &a) {
  Json overrides = Json::array();
  for (auto &o : a.overrides) overrides.push_back({{"name", o.name}, {"fields", o.fields}});
  return {{"name", a.name},
          {"route_prefix", a.route_prefix ? Json(*a.route_prefix) : Json(nullptr)},
          {"import_path", a.import_path},
          {"args_json", a.args_json},
          {"app_dir", a.app_dir},
          {"source", a.source},
          {"submitted", a.submitted},
          {"runtime_env", a.runtime_env},
          {"env_vars", a.prepared_env.env_vars},
          {"working_dir", a.prepared_env.working_dir},
          {"overrides", overrides},
          {"logging_config", a.logging_config ? *a.logging_config : Json(nullptr)},
          {"code_key", a.code_key},
          {"graph", Binary(a.graph)},
          {"library_stamp", a.library_stamp},
          {"build_id", a.build_id},
          {"building", a.building},
          {"build_failed", a.build_failed},
          {"build_error", a.build_error},
          {"deleting", a.deleting},
          {"last_deployed_time_s", a.last_deployed_time_s},
          {"ingress", a.ingress},
          {"deployments", a.deployments}};
}

AppState DecodeApp(const Json &j) {
  AppState a;
  a.name = j.at("name");
  if (!j.at("route_prefix").is_null()) a.route_prefix = j.at("route_prefix").get<std::string>();
  a.import_path = j.at("import_path");
  a.args_json = j.at("args_json");
  a.app_dir = j.at("app_dir");
  a.source = j.at("source");
  a.submitted = j.at("submitted");
  a.runtime_env = j.at("runtime_env");
  a.prepared_env.env_vars = j.at("env_vars").get<std::map<std::string, std::string>>();
  a.prepared_env.working_dir = j.at("working_dir");
  for (const Json &o : j.at("overrides")) {
    a.overrides.push_back({o.at("name").get<std::string>(), o.at("fields")});
  }
  if (auto it = j.find("logging_config"); it != j.end() && !it->is_null()) a.logging_config = *it;
  a.code_key = j.at("code_key");
  a.graph = Bytes(j.at("graph"));
  a.library_stamp = j.at("library_stamp");
  a.build_id = j.at("build_id");
  a.building = j.at("building");
  a.build_failed = j.at("build_failed");
  a.build_error = j.at("build_error");
  a.deleting = j.at("deleting");
  a.last_deployed_time_s = j.at("last_deployed_time_s");
  a.ingress = j.at("ingress");
  a.deployments = j.at("deployments").get<std::vector<std::string>>();
  return a;
}

Json EncodeDeployment(const DeploymentState &d) {
  Json replicas = Json::array();
  for (auto &[id, r] : d.replicas) {
    if (r.pid == 0) continue;
    replicas.push_back({{"id", r.id},
                        {"state", static_cast<int>(r.state)},
                        {"pid", r.pid},
                        {"node_id", r.node_id},
                        {"data_address", r.data_address},
                        {"control_address", r.control_address},
                        {"log_file", r.log_file},
                        {"start_time_s", r.start_time_s},
                        {"version", r.version},
                        {"config_version", r.config_version},
                        {"gpu_ids", r.gpu_ids}});
  }
  const DeploymentSpec &s = d.spec;
  Json j = {{"app", d.id.app},
            {"name", d.id.name},
            {"options", config::ToJson(s.cfg)},
            {"factory_key", s.factory_key},
            {"init_args", Binary(s.init_args)},
            {"library_path", s.library_path},
            {"app_dir", s.app_dir},
            {"working_dir", s.working_dir},
            {"env", s.env},
            {"fingerprint", s.fingerprint},
            {"config_fingerprint", s.config_fingerprint},
            {"version", d.version},
            {"config_version", d.config_version},
            {"ingress", s.ingress},
            {"deleting", d.deleting},
            {"status", static_cast<int>(d.status.status)},
            {"trigger", static_cast<int>(d.status.trigger)},
            {"message", d.message},
            {"startup_failures", d.startup_failures},
            {"version_started", d.version_started},
            {"terminally_failed", d.terminally_failed},
            {"target_num_replicas", d.target_num_replicas}};
  j["replicas"] = std::move(replicas);  // moved, not copied through an initializer list
  return j;
}

/// Whether process `pid` with `tag` runs on `node` according to `alive`.
bool Running(const std::map<std::string, NodeProcesses> &alive, const std::string &node, int pid,
             const std::string &tag) {
  auto n = alive.find(node);
  if (n == alive.end()) return false;
  if (!n->second.listed) return true;  // unverified: the health check decides
  auto it = n->second.processes.find(pid);
  return it != n->second.processes.end() && it->second == tag;
}

/// The deployment of `j`; its replicas reconciled with `alive`.
DeploymentState DecodeDeployment(const Json &j, const std::string &head_node_id,
                                 const std::map<std::string, NodeProcesses> &alive,
                                 Actions &actions) {
  DeploymentState d;
  d.id = {j.at("app").get<std::string>(), j.at("name").get<std::string>()};
  auto cfg = config::ResolveDeploymentConfig(j.at("options"));
  if (!cfg.ok()) throw std::runtime_error(std::string(cfg.status().message()));
  DeploymentSpec &s = d.spec;
  s.cfg = *cfg;
  s.factory_key = j.at("factory_key");
  s.init_args = Bytes(j.at("init_args"));
  s.library_path = j.at("library_path");
  s.app_dir = j.at("app_dir");
  s.working_dir = j.at("working_dir");
  s.env = j.at("env").get<std::map<std::string, std::string>>();
  s.fingerprint = j.at("fingerprint");
  s.config_fingerprint = j.at("config_fingerprint");
  s.ingress = j.at("ingress");
  d.version = j.at("version");
  d.config_version = j.at("config_version");
  d.deleting = j.at("deleting");
  d.status = {static_cast<DeploymentStatus>(j.at("status").get<int>()),
              static_cast<StatusTrigger>(j.at("trigger").get<int>())};
  d.message = j.at("message");
  d.startup_failures = j.at("startup_failures");
  d.version_started = j.at("version_started");
  d.terminally_failed = j.at("terminally_failed");
  d.target_num_replicas = j.value("target_num_replicas", s.cfg.num_replicas);
  for (const Json &rj : j.at("replicas")) {
    ReplicaInfo r;
    r.id = rj.at("id");
    r.deployment = d.id;
    r.pid = rj.at("pid");
    r.node_id = rj.at("node_id");
    if (r.node_id.empty()) r.node_id = head_node_id;
    if (!Running(alive, r.node_id, r.pid, ProcessTag::Replica(r.id).Encode())) {
      // Died while no controller was watching: replaced like any dead replica.
      if (!d.deleting) {
        d.status = Transition(d.status, DeploymentEvent::kHealthCheckFailed);
        d.message = "Replica " + r.id + " died while the controller was down.";
      }
      continue;
    }
    auto state = static_cast<ReplicaState>(rj.at("state").get<int>());
    r.data_address = rj.at("data_address");
    r.control_address = rj.at("control_address");
    r.log_file = rj.at("log_file");
    r.start_time_s = rj.at("start_time_s");
    r.version = rj.at("version");
    r.config_version = rj.at("config_version");
    r.gpu_ids = rj.value("gpu_ids", std::vector<int>{});
    if (state == ReplicaState::kStopping || r.control_address.empty()) {
      // Stopping, or not ready in the checkpoint: it may have reported to the
      // old controller already, so it cannot be adopted; it is stopped and
      // scaling replaces it.
      actions.push_back(StopProcessAction{r.pid, 0, r.node_id});
      r.state = ReplicaState::kStopping;
    } else {
      r.state = ReplicaState::kRecovering;  // health-checked at once
    }
    d.replicas.Add(std::move(r));
  }
  return d;
}

}  // namespace

std::string EncodeCheckpoint(const ApplicationStateManager &apps,
                             const DeploymentStateManager &deployments,
                             const ProxyStateManager &proxies, const NodeTable &nodes) {
  Json japps = Json::array();
  for (auto &[name, a] : apps.apps()) japps.push_back(EncodeApp(a));
  Json jdeps = Json::array();
  for (auto &[id, d] : deployments.deployments()) jdeps.push_back(EncodeDeployment(d));
  Json jproxies = Json::object();
  for (auto &[node, p] : proxies.proxies()) {
    jproxies[node] = {{"pid", p.pid},
                      {"http_port", p.http_port},
                      {"log_file", p.log_file},
                      {"status", p.status}};
  }
  Json jnodes = Json::array();
  for (const NodeInfo *n : nodes.Ordered()) {
    if (n->head || n->status == NodeStatus::kDead) continue;
    jnodes.push_back({{"id", n->id},
                      {"ip", n->ip},
                      {"agent_address", n->agent_address},
                      {"resources", n->resources},
                      {"labels", n->labels},
                      {"registered_unix_s", n->registered_unix_s},
                      {"draining", n->status == NodeStatus::kDraining}});
  }
  auto tc = deployments.target_capacity();
  // shutting_down is not saved: a controller started later serves again.
  Json doc = {{"version", 1}, {"target_capacity", tc ? Json(*tc) : Json(nullptr)}};
  auto lc = apps.global_logging_config_set();
  doc["logging_config"] = lc ? *lc : Json(nullptr);
  doc["apps"] = std::move(japps);
  doc["deployments"] = std::move(jdeps);
  doc["proxies"] = std::move(jproxies);
  doc["nodes"] = std::move(jnodes);
  std::vector<std::uint8_t> packed = Json::to_msgpack(doc);
  return std::string(packed.begin(), packed.end());
}

namespace {
Json Parse(const std::string &blob) {
  Json snap = Json::from_msgpack(blob, true, false);
  if (snap.is_discarded() || !snap.is_object()) throw std::runtime_error("not msgpack");
  return snap;
}
}  // namespace

std::vector<NodeInfo> CheckpointedNodes(const std::string &blob) {
  Json snap = Parse(blob);
  std::vector<NodeInfo> out;
  auto it = snap.find("nodes");
  if (it == snap.end()) return out;
  for (const Json &j : *it) {
    NodeInfo n;
    n.id = j.at("id");
    n.ip = j.at("ip");
    n.agent_address = j.at("agent_address");
    n.resources = j.at("resources").get<ResourceSet>();
    n.labels = j.at("labels").get<std::map<std::string, std::string>>();
    n.registered_unix_s = j.at("registered_unix_s");
    if (j.at("draining").get<bool>()) n.status = NodeStatus::kDraining;
    out.push_back(std::move(n));
  }
  return out;
}

void RestoreCheckpoint(const std::string &blob, const std::string &head_node_id,
                       const std::map<std::string, NodeProcesses> &alive,
                       ApplicationStateManager &apps, DeploymentStateManager &deployments,
                       ProxyStateManager &proxies, Actions &actions) {
  Json snap = Parse(blob);
  const std::map<int, std::string> no_processes;
  auto head = alive.find(head_node_id);
  const std::map<int, std::string> &head_processes =
      head == alive.end() ? no_processes : head->second.processes;
  if (auto it = snap.find("target_capacity"); it != snap.end() && !it->is_null()) {
    deployments.SetTargetCapacity(it->get<double>());
  }
  if (auto it = snap.find("logging_config"); it != snap.end() && !it->is_null()) {
    apps.set_global_logging_config(*it);
  }
  for (const Json &j : snap.at("apps")) {
    AppState a = DecodeApp(j);
    bool build_running = false;
    for (auto &[pid, tag] : head_processes) {
      build_running |= tag == ProcessTag::Build(a.name).Encode();
    }
    apps.Restore(std::move(a), build_running, actions);
  }
  for (const Json &j : snap.at("deployments")) {
    deployments.Restore(DecodeDeployment(j, head_node_id, alive, actions));
  }
  for (auto &[node, p] : snap.at("proxies").items()) {
    ProxyInfo proxy;
    proxy.pid = p.at("pid");
    if (!Running(alive, node, proxy.pid, ProcessTag::Proxy().Encode())) continue;
    proxy.status = p.value("status", "HEALTHY");
    proxy.http_port = p.at("http_port");
    proxy.log_file = p.at("log_file");
    proxies.Restore(node, std::move(proxy));
  }
}

}  // namespace serve::controller

#include "controller/executor.h"

#include <atomic>
#include <memory>

namespace serve::controller {
namespace {
template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;
}  // namespace

void ActionExecutor::Execute(Actions actions) {
  for (Action& action : actions) {
    std::visit(
        Overloaded{
            [&](StartReplicaAction& a) {
              AgentClient* agent = agents_(a.node_id);
              if (agent == nullptr) {
                results_.OnReplicaProcessStarted(
                    a.replica_id, a.node_id,
                    absl::UnavailableError("node " + a.node_id + " is not alive"));
                return;
              }
              agent->StartProcess(a.request, [this, id = a.replica_id, node = a.node_id](
                                                 absl::StatusOr<int> pid) {
                results_.OnReplicaProcessStarted(id, node, pid);
              });
            },
            [&](StartBuildAction& a) {
              agent_.StartProcess(a.request, [this, app = a.app, build = a.build_id](
                                                 absl::StatusOr<int> pid) {
                results_.OnBuildProcessStarted(app, build, pid);
              });
            },
            [&](StartProxyAction& a) {
              AgentClient* agent = agents_(a.node_id);
              auto done = [this, node = a.node_id](absl::StatusOr<int> pid) {
                results_.OnProxyProcessStarted(node, pid);
              };
              if (agent == nullptr) {
                return done(absl::UnavailableError("node " + a.node_id + " is not alive"));
              }
              agent->StartProcess(a.request, std::move(done));
            },
            [&](StopProcessAction& a) {
              if (AgentClient* agent = agents_(a.node_id)) agent->StopProcess(a.pid, a.grace_s, nullptr);
            },
            [&](CheckHealthAction& a) {
              replicas_.CheckHealth(a.address, a.timeout_s,
                                    [this, dep = a.deployment, id = a.replica_id](
                                        absl::Status st) { results_.OnHealthResult(dep, id, st); });
            },
            [&](ReconfigureAction& a) {
              replicas_.Reconfigure(
                  a.address, a.request,
                  [this, dep = a.deployment, id = a.replica_id, v = a.config_version](
                      absl::Status st) { results_.OnReconfigureResult(dep, id, v, st); });
            },
            [&](RunPolicyAction& a) {
              replicas_.RunPolicy(a.address, a.request,
                                  [this, dep = a.deployment](absl::StatusOr<v1::PolicyReply> r) {
                                    results_.OnPolicyResult(dep, r);
                                  });
            },
            [&](ShutdownNodeAction& a) {
              // Worker agents stop with their replicas; then the head's proxies (so no new
              // request arrives), its agent and the rest.
              for (const std::string& node : a.worker_nodes) {
                if (AgentClient* agent = agents_(node)) agent->Shutdown();
              }
              if (a.proxy_pids.empty()) {
                agent_.Shutdown();
                return;
              }
              auto left = std::make_shared<std::atomic<int>>(static_cast<int>(a.proxy_pids.size()));
              for (int pid : a.proxy_pids) {
                agent_.StopProcess(pid, 2, [this, left] {
                  if (--*left == 0) agent_.Shutdown();
                });
              }
            },
        },
        action);
  }
}

}  // namespace serve::controller

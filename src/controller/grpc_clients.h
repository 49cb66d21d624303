#pragma once

// AgentClient and ReplicaClient over gRPC (async callback API; nothing blocks the loop
// except ListProcesses, used once at recovery).

#include <memory>
#include <string>

#include "controller/clients.h"
#include "serve/v1/agent.grpc.pb.h"

namespace serve::controller {

class GrpcAgentClient final : public AgentClient {
 public:
  explicit GrpcAgentClient(const std::string& agent_address);
  void StartProcess(const v1::StartProcessRequest& request,
                    std::function<void(absl::StatusOr<int>)> done) override;
  void StopProcess(int pid, double grace_s, std::function<void()> done) override;
  absl::StatusOr<std::map<int, std::string>> ListProcesses() override;
  void Shutdown() override;

 private:
  std::unique_ptr<v1::Agent::Stub> stub_;
};

class GrpcReplicaClient final : public ReplicaClient {
 public:
  void CheckHealth(const std::string& address, double timeout_s,
                   std::function<void(absl::Status)> done) override;
  void Reconfigure(const std::string& address, const v1::ReconfigureRequest& request,
                   std::function<void(absl::Status)> done) override;
  void RunPolicy(const std::string& address, const v1::PolicyRequest& request,
                 std::function<void(absl::StatusOr<v1::PolicyReply>)> done) override;
};

}  // namespace serve::controller

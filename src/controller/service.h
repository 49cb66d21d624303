#pragma once

// The Controller gRPC service: a thin adapter from RPCs to the control loop.

#include "controller/control_loop.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::controller {

class ControllerService final : public v1::Controller::CallbackService {
 public:
  explicit ControllerService(ControlLoop& loop) : loop_(loop) {}

  grpc::ServerUnaryReactor* DeployApplication(grpc::CallbackServerContext* ctx,
                                              const v1::DeployApplicationRequest* req,
                                              v1::DeployApplicationReply*) override;
  grpc::ServerUnaryReactor* GetDetails(grpc::CallbackServerContext* ctx,
                                       const v1::GetDetailsRequest*,
                                       v1::GetDetailsReply* reply) override;
  grpc::ServerUnaryReactor* DeleteApplication(grpc::CallbackServerContext* ctx,
                                              const v1::DeleteApplicationRequest* req,
                                              v1::Empty*) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx,
                                     const v1::ShutdownRequest*, v1::Empty*) override;
  grpc::ServerUnaryReactor* ListenForChange(grpc::CallbackServerContext* ctx,
                                            const v1::ListenRequest* req,
                                            v1::ListenReply* reply) override;
  grpc::ServerUnaryReactor* GetReplicaSpec(grpc::CallbackServerContext* ctx,
                                           const v1::ReplicaSpecRequest* req,
                                           v1::ReplicaSpec* spec) override;
  grpc::ServerUnaryReactor* ReportReplicaStarted(grpc::CallbackServerContext* ctx,
                                                 const v1::ReplicaStarted* msg,
                                                 v1::Empty*) override;
  grpc::ServerUnaryReactor* ReportBuildResult(grpc::CallbackServerContext* ctx,
                                              const v1::BuildResult* msg, v1::Empty*) override;
  grpc::ServerUnaryReactor* ReportProcessExit(grpc::CallbackServerContext* ctx,
                                              const v1::ProcessExit* msg, v1::Empty*) override;
  grpc::ServerUnaryReactor* ReportProxyReady(grpc::CallbackServerContext* ctx,
                                             const v1::ProxyReady* msg, v1::Empty*) override;
  grpc::ServerUnaryReactor* RecordHandleMetrics(grpc::CallbackServerContext* ctx,
                                                const v1::HandleMetricsBatch* batch,
                                                v1::Empty*) override;
  grpc::ServerUnaryReactor* RecordReplicaMetrics(grpc::CallbackServerContext* ctx,
                                                 const v1::ReplicaMetricsReport* report,
                                                 v1::Empty*) override;
  grpc::ServerUnaryReactor* RecordMultiplexedModelIds(grpc::CallbackServerContext* ctx,
                                                      const v1::MultiplexedModelIds* msg,
                                                      v1::Empty*) override;
  grpc::ServerUnaryReactor* RegisterNode(grpc::CallbackServerContext* ctx,
                                         const v1::RegisterNodeRequest* req, v1::Empty*) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::NodeHeartbeat* req, v1::Empty*) override;
  grpc::ServerUnaryReactor* DrainNode(grpc::CallbackServerContext* ctx,
                                      const v1::DrainNodeRequest* req, v1::Empty*) override;

 private:
  ControlLoop& loop_;
};

}  // namespace serve::controller

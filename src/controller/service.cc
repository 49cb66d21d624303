#include "controller/service.h"

#include <nlohmann/json.hpp>

#include "config/limits.h"
#include "config/schema.h"
#include "rpc/grpc_util.h"

namespace serve::controller {
namespace {

using Json = nlohmann::json;

/// Finishes the call at once with `status`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx,
                               const absl::Status& status = absl::OkStatus()) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* ControllerService::DeployApplication(
    grpc::CallbackServerContext* ctx, const v1::DeployApplicationRequest* req,
    v1::DeployApplicationReply*) {
  // The imperative form goes through the same schema validation as config files.
  std::string why;
  Json args = config::limits::ParseBoundedJson(req->args_json().empty() ? "{}" : req->args_json(),
                                               &why);
  if (args.is_discarded()) return Done(ctx, absl::InvalidArgumentError("args: " + why));
  Json app = {{"name", req->name().empty() ? "default" : req->name()},
              {"import_path", req->import_path()},
              {"args", std::move(args)}};
  app["route_prefix"] = req->has_route_prefix() ? Json(req->route_prefix()) : Json(nullptr);
  auto cfg = config::ParseServeDeployConfig(Json{{"applications", Json::array({app})}});
  if (!cfg.ok()) return Done(ctx, cfg.status());
  return Done(ctx, loop_.Deploy(*cfg, "imperative", req->app_dir()));
}

grpc::ServerUnaryReactor* ControllerService::GetDetails(grpc::CallbackServerContext* ctx,
                                                        const v1::GetDetailsRequest*,
                                                        v1::GetDetailsReply* reply) {
  reply->set_json(loop_.Details("").dump());
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::DeleteApplication(
    grpc::CallbackServerContext* ctx, const v1::DeleteApplicationRequest* req, v1::Empty*) {
  return Done(ctx, loop_.DeleteApplication(req->name()));
}

grpc::ServerUnaryReactor* ControllerService::Shutdown(grpc::CallbackServerContext* ctx,
                                                      const v1::ShutdownRequest*, v1::Empty*) {
  loop_.Shutdown();
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::ListenForChange(grpc::CallbackServerContext* ctx,
                                                             const v1::ListenRequest* req,
                                                             v1::ListenReply* reply) {
  auto* reactor = ctx->DefaultReactor();
  loop_.Listen({req->keys().begin(), req->keys().end()},
               [reactor, reply](std::vector<v1::Update> updates, bool timed_out) {
                 reply->set_timed_out(timed_out);
                 for (auto& u : updates) *reply->add_updates() = std::move(u);
                 reactor->Finish(grpc::Status::OK);
               });
  return reactor;
}

grpc::ServerUnaryReactor* ControllerService::GetReplicaSpec(grpc::CallbackServerContext* ctx,
                                                            const v1::ReplicaSpecRequest* req,
                                                            v1::ReplicaSpec* spec) {
  auto result = loop_.GetReplicaSpec(req->replica_id());
  if (!result.ok()) return Done(ctx, result.status());
  *spec = std::move(*result);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::ReportReplicaStarted(grpc::CallbackServerContext* ctx,
                                                                  const v1::ReplicaStarted* msg,
                                                                  v1::Empty*) {
  loop_.OnReplicaStarted(*msg);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::ReportBuildResult(grpc::CallbackServerContext* ctx,
                                                               const v1::BuildResult* msg,
                                                               v1::Empty*) {
  loop_.OnBuildResult(*msg);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::ReportProcessExit(grpc::CallbackServerContext* ctx,
                                                               const v1::ProcessExit* msg,
                                                               v1::Empty*) {
  loop_.OnProcessExit(*msg);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::ReportProxyReady(grpc::CallbackServerContext* ctx,
                                                              const v1::ProxyReady* msg,
                                                              v1::Empty*) {
  loop_.OnProxyReady(*msg);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::RecordHandleMetrics(
    grpc::CallbackServerContext* ctx, const v1::HandleMetricsBatch* batch, v1::Empty*) {
  loop_.RecordHandleMetrics(*batch);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::RecordReplicaMetrics(
    grpc::CallbackServerContext* ctx, const v1::ReplicaMetricsReport* report, v1::Empty*) {
  loop_.RecordReplicaMetrics(*report);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::RecordMultiplexedModelIds(
    grpc::CallbackServerContext* ctx, const v1::MultiplexedModelIds* msg, v1::Empty*) {
  loop_.RecordMultiplexedModelIds(*msg);
  return Done(ctx);
}

grpc::ServerUnaryReactor* ControllerService::RegisterNode(grpc::CallbackServerContext* ctx,
                                                          const v1::RegisterNodeRequest* req,
                                                          v1::Empty*) {
  return Done(ctx, loop_.RegisterNode(*req));
}

grpc::ServerUnaryReactor* ControllerService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                       const v1::NodeHeartbeat* req, v1::Empty*) {
  return Done(ctx, loop_.NodeHeartbeat(req->node_id()));
}

grpc::ServerUnaryReactor* ControllerService::DrainNode(grpc::CallbackServerContext* ctx,
                                                       const v1::DrainNodeRequest* req,
                                                       v1::Empty*) {
  return Done(ctx, loop_.DrainNode(req->node_id(), req->deadline_s()));
}

}  // namespace serve::controller

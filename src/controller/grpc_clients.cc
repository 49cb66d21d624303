#include "controller/grpc_clients.h"

#include "rpc/grpc_util.h"
#include "serve/v1/replica.grpc.pb.h"

namespace serve::controller {
namespace {

/// One in-flight unary call: its context, request and reply live until the callback ran.
template <class Req, class Reply>
struct Call {
  std::unique_ptr<grpc::ClientContext> ctx;
  Req request;
  Reply reply;
};

}  // namespace

GrpcAgentClient::GrpcAgentClient(const std::string& agent_address)
    : stub_(v1::Agent::NewStub(rpc::ChannelTo(agent_address))) {}

void GrpcAgentClient::StartProcess(const v1::StartProcessRequest& request,
                                   std::function<void(absl::StatusOr<int>)> done) {
  auto call = std::make_shared<Call<v1::StartProcessRequest, v1::StartProcessReply>>();
  call->ctx = rpc::ContextWithDeadline(10);
  call->request = request;
  stub_->async()->StartProcess(call->ctx.get(), &call->request, &call->reply,
                               [call, done = std::move(done)](grpc::Status st) {
                                 if (st.ok()) {
                                   done(call->reply.pid());
                                 } else {
                                   done(rpc::FromGrpcStatus(st));
                                 }
                               });
}

void GrpcAgentClient::StopProcess(int pid, double grace_s, std::function<void()> done) {
  auto call = std::make_shared<Call<v1::StopProcessRequest, v1::Empty>>();
  call->ctx = rpc::ContextWithDeadline(5 + grace_s);
  call->request.set_pid(pid);
  call->request.set_grace_s(grace_s);
  stub_->async()->StopProcess(call->ctx.get(), &call->request, &call->reply,
                              [call, done = std::move(done)](grpc::Status) {
                                if (done) done();
                              });
}

absl::StatusOr<std::map<int, std::string>> GrpcAgentClient::ListProcesses() {
  auto ctx = rpc::ContextWithDeadline(10);
  v1::Empty req;
  v1::ListProcessesReply reply;
  grpc::Status st = stub_->ListProcesses(ctx.get(), req, &reply);
  if (!st.ok()) return rpc::FromGrpcStatus(st);
  std::map<int, std::string> out;
  for (auto& p : reply.processes()) out[p.pid()] = p.tag();
  return out;
}

void GrpcAgentClient::Shutdown() {
  auto call = std::make_shared<Call<v1::Empty, v1::Empty>>();
  call->ctx = rpc::ContextWithDeadline(5);
  stub_->async()->Shutdown(call->ctx.get(), &call->request, &call->reply,
                           [call](grpc::Status) {});
}

void GrpcReplicaClient::CheckHealth(const std::string& address, double timeout_s,
                                    std::function<void(absl::Status)> done) {
  struct HealthCall : Call<v1::Empty, v1::HealthReply> {
    std::unique_ptr<v1::ReplicaControl::Stub> stub;
  };
  auto call = std::make_shared<HealthCall>();
  call->ctx = rpc::ContextWithDeadline(timeout_s);
  call->stub = v1::ReplicaControl::NewStub(rpc::ChannelTo(address));
  call->stub->async()->CheckHealth(
      call->ctx.get(), &call->request, &call->reply,
      [call, done = std::move(done)](grpc::Status st) {
        if (!st.ok()) return done(rpc::FromGrpcStatus(st));
        done(call->reply.ok() ? absl::OkStatus() : absl::UnknownError(call->reply.error()));
      });
}

void GrpcReplicaClient::Reconfigure(const std::string& address,
                                    const v1::ReconfigureRequest& request,
                                    std::function<void(absl::Status)> done) {
  struct ReconfigureCall : Call<v1::ReconfigureRequest, v1::ReconfigureReply> {
    std::unique_ptr<v1::ReplicaControl::Stub> stub;
  };
  auto call = std::make_shared<ReconfigureCall>();
  call->ctx = rpc::ContextWithDeadline(60);
  call->request = request;
  call->stub = v1::ReplicaControl::NewStub(rpc::ChannelTo(address));
  call->stub->async()->Reconfigure(
      call->ctx.get(), &call->request, &call->reply,
      [call, done = std::move(done)](grpc::Status st) {
        if (!st.ok()) return done(rpc::FromGrpcStatus(st));
        done(call->reply.ok() ? absl::OkStatus() : absl::UnknownError(call->reply.error()));
      });
}

void GrpcReplicaClient::RunPolicy(const std::string& address, const v1::PolicyRequest& request,
                                  std::function<void(absl::StatusOr<v1::PolicyReply>)> done) {
  struct PolicyCall : Call<v1::PolicyRequest, v1::PolicyReply> {
    std::unique_ptr<v1::AutoscalingPolicy::Stub> stub;
  };
  auto call = std::make_shared<PolicyCall>();
  call->ctx = rpc::ContextWithDeadline(10);
  call->request = request;
  call->stub = v1::AutoscalingPolicy::NewStub(rpc::ChannelTo(address));
  call->stub->async()->Decide(call->ctx.get(), &call->request, &call->reply,
                              [call, done = std::move(done)](grpc::Status st) {
                                if (!st.ok()) return done(rpc::FromGrpcStatus(st));
                                done(std::move(call->reply));
                              });
}

}  // namespace serve::controller

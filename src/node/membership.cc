#include "node/membership.h"

#include <chrono>

#include <spdlog/spdlog.h>

#include "common/util.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::node {
namespace {
constexpr char kWrongToken[] =
    "it does not accept this node's cluster token (give the worker a copy of the head's "
    "<session>/cluster_token with --token-file)";
}  // namespace

Membership::Membership(std::string controller_address, v1::RegisterNodeRequest request,
                       Callbacks callbacks)
    : controller_address_(std::move(controller_address)),
      request_(std::move(request)),
      callbacks_(std::move(callbacks)) {
  thread_ = std::thread([this] { Run(); });
}

Membership::~Membership() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Membership::Sleep(double seconds) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return stopping_; });
}

void Membership::Run() {
  const double period = EnvDouble("SERVE_NODE_HEARTBEAT_PERIOD_S", 1.0);
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(controller_address_));
  bool registered = false;
  bool warned = false;
  do {
    v1::Empty empty;
    auto ctx = rpc::ContextWithDeadline(std::max(period, 2.0));
    if (!registered) {
      grpc::Status st = stub->RegisterNode(ctx.get(), request_, &empty);
      if (st.ok()) {
        registered = true;
        warned = false;
        spdlog::info("Node {} joined the cluster at {}.", request_.node_id(), controller_address_);
        if (callbacks_.on_registered) callbacks_.on_registered();
        continue;
      }
      if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          st.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        callbacks_.on_dead(st.error_message());
        return;
      }
      if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
        callbacks_.on_dead(kWrongToken);
        return;
      }
      if (!warned) {
        spdlog::warn("Cannot register with the controller at {}: {}; retrying.",
                     controller_address_, st.error_message());
        warned = true;
      }
      continue;
    }
    v1::NodeHeartbeat hb;
    hb.set_node_id(request_.node_id());
    grpc::Status st = stub->Heartbeat(ctx.get(), hb, &empty);
    if (st.ok()) {
      warned = false;
    } else if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      spdlog::warn("The controller does not know node {} (it restarted); stopping this node's "
                   "processes and registering again.", request_.node_id());
      if (callbacks_.on_forgotten) callbacks_.on_forgotten();
      registered = false;
      continue;
    } else if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      callbacks_.on_dead(st.error_message());
      return;
    } else if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      callbacks_.on_dead(kWrongToken);
      return;
    } else if (!warned) {
      spdlog::warn("Heartbeat to {} failed: {}; retrying.", controller_address_,
                   st.error_message());
      warned = true;
    }
  } while (Sleep(period));
}

}  // namespace serve::node

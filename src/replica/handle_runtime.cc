#include "replica/handle_runtime.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/ids.h"
#include "common/util.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::replica {

ReplicaHandleRuntime::ReplicaHandleRuntime(std::string controller_address, std::string app_name,
                                           std::string node_id, std::string metrics_source)
    : app_name_(std::move(app_name)),
      controller_address_(controller_address),
      io_(1),
      work_(io_.get_executor()),
      router_(io_.get_executor(), std::move(node_id)) {
  router::MetricsOptions metrics;
  metrics.controller_address = controller_address;
  metrics.source = metrics_source.empty() ? "client:" + std::to_string(::getpid())
                                          : std::move(metrics_source);
  router_.EnableMetrics(std::move(metrics));  // before the first targets arrive
  poll_ = std::make_unique<router::LongPollClient>(
      std::move(controller_address), io_.get_executor(), [this](const v1::Update& u) {
        if (auto id = ParseTargetsKey(u.key()); id && u.has_targets()) {
          router_.UpdateTargets(id->Key(), u.targets());
          OnTargets(id->Key());
        }
      });
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "serve-handles");
    io_.run();
  });
}

ReplicaHandleRuntime::~ReplicaHandleRuntime() {
  blocking_.stop();
  blocking_.join();
  poll_.reset();
  work_.reset();
  io_.stop();
  thread_.join();
}

namespace {

detail::CallResult ToCallResult(router::RouteResult& r) {
  detail::CallResult c;
  switch (r.code) {
    case router::RouteResult::Code::kOk:
      if (r.head.ok()) {
        c.body = std::move(r.body);
      } else {
        c.code = detail::CallResult::Code::kError;
        c.error_type = r.head.error_type();
        c.error_message = r.head.error_message();
      }
      break;
    case router::RouteResult::Code::kBackPressure:
      c.code = detail::CallResult::Code::kBackPressure;
      c.error_message = r.error;
      break;
    case router::RouteResult::Code::kUnavailable:
      c.code = detail::CallResult::Code::kUnavailable;
      c.error_message = r.error;
      break;
    case router::RouteResult::Code::kReplicaDied:
      c.code = detail::CallResult::Code::kError;
      c.error_type = "ActorDiedError";
      c.error_message = r.error;
      break;
    case router::RouteResult::Code::kCancelled:
      c.code = detail::CallResult::Code::kCancelled;
      c.error_message = r.error;
      break;
  }
  return c;
}

}  // namespace

/// One handle call. Created on the caller's thread, then touched on io_'s thread only.
struct ReplicaHandleRuntime::Outgoing {
  enum class Stage { kResolving, kHeld, kRouted, kStreaming, kDone };
  Stage stage = Stage::kResolving;
  std::string app;
  std::string deployment;  // kAppIngress until resolved
  std::string key;         // app#deployment once resolved
  std::string request_id;  // of the caller's request (the parent)
  bool shield = false;
  v1::RequestHead head;
  std::string args;
  std::shared_ptr<detail::ResponseState> response;  // a unary call
  std::shared_ptr<detail::StreamState> stream;      // a streaming call
  uint64_t router_id = 0;                            // kRouted
  std::shared_ptr<rpc::ChunkQueue> chunks;           // kStreaming
  std::optional<std::multimap<std::string, OutgoingPtr>::iterator> child;  // in children_
};

bool ReplicaHandleRuntime::Prepare(const detail::CallTarget& target, Outgoing& o,
                                   detail::CallResult* failure) {
  // Child calls carry the request id and route of the request being served (Ray propagates it).
  if (const sdk::RequestContext* ctx = sdk::CurrentRequestContext()) {
    o.head.set_request_id(ctx->request_id);
    o.head.set_route(ctx->route);
  } else {
    o.head.set_request_id(RandomUuid());
  }
  o.request_id = o.head.request_id();
  o.app = target.app.empty() ? app_name_ : target.app;
  o.deployment = target.deployment;
  if (o.deployment.empty()) {
    *failure =
        detail::CallResult::Failure(detail::CallResult::Code::kUnavailable, "empty deployment name");
    return false;
  }
  if (o.deployment != detail::kAppIngress) o.key = DeploymentId{o.app, o.deployment}.Key();
  o.shield = target.shield;
  o.head.set_app_name(o.app);
  o.head.set_method(target.method);
  o.head.set_multiplexed_model_id(target.multiplexed_model_id);
  o.head.set_stream(target.stream);
  o.head.set_caller("handle");
  return true;
}

void ReplicaHandleRuntime::Call(const detail::CallTarget& target, std::string encoded_args,
                                std::shared_ptr<detail::ResponseState> state) {
  auto o = std::make_shared<Outgoing>();
  detail::CallResult failure;
  if (!Prepare(target, *o, &failure)) {
    state->Complete(std::move(failure));
    return;
  }
  o->args = std::move(encoded_args);
  o->response = state;
  std::weak_ptr<Outgoing> weak = o;
  bool live = state->SetCanceller([this, weak] {
    boost::asio::post(io_, [this, weak] {
      if (auto o = weak.lock()) Cancel(o);
    });
  });
  if (live) Start(std::move(o));
}

void ReplicaHandleRuntime::CallStream(const detail::CallTarget& target, std::string encoded_args,
                                      std::shared_ptr<detail::StreamState> stream) {
  auto o = std::make_shared<Outgoing>();
  detail::CallResult failure;
  if (!Prepare(target, *o, &failure)) {
    stream->Finish(std::move(failure));
    return;
  }
  o->args = std::move(encoded_args);
  o->stream = stream;
  std::weak_ptr<Outgoing> weak = o;
  bool live = stream->SetCanceller([this, weak] {
    boost::asio::post(io_, [this, weak] {
      if (auto o = weak.lock()) Cancel(o);
    });
  });
  if (live) Start(std::move(o));
}

void ReplicaHandleRuntime::Start(OutgoingPtr o) {
  if (o->deployment == detail::kAppIngress) {
    std::lock_guard lock(ingress_mu_);
    if (auto it = ingress_.find(o->app); it != ingress_.end()) {
      o->deployment = it->second;
      o->key = DeploymentId{o->app, o->deployment}.Key();
    }
  }
  if (o->deployment != detail::kAppIngress) {
    boost::asio::post(io_, [this, o = std::move(o)] { Route(o); });
    return;
  }
  // First call to this application: ask the controller for its ingress, off this thread.
  boost::asio::post(blocking_, [this, o = std::move(o)] {
    std::string ingress = ResolveIngress(o->app);
    boost::asio::post(io_, [this, o, ingress] {
      if (o->stage == Outgoing::Stage::kDone) return;  // cancelled meanwhile
      if (ingress.empty()) {
        Complete(o, detail::CallResult::Failure(detail::CallResult::Code::kUnavailable,
                            "Application '" + o->app + "' does not exist."));
        return;
      }
      o->deployment = ingress;
      o->key = DeploymentId{o->app, o->deployment}.Key();
      Route(o);
    });
  });
}

void ReplicaHandleRuntime::Route(const OutgoingPtr& o) {
  if (o->stage == Outgoing::Stage::kDone) return;
  if (!o->shield) o->child = children_.emplace(o->request_id, o);
  if (watched_.insert(o->key).second) poll_->Watch(TargetsKey({o->app, o->deployment}));
  if (!known_.count(o->key)) {
    // No targets yet: hold it until they arrive or the controller says it does not exist.
    o->stage = Outgoing::Stage::kHeld;
    Held& held = held_[o->key];
    held.calls.push_back(o);
    if (!held.check) ScheduleExistenceCheck(o->key, std::chrono::milliseconds(500));
    return;
  }
  Send(o);
}

void ReplicaHandleRuntime::Send(const OutgoingPtr& o) {
  o->stage = Outgoing::Stage::kRouted;
  uint64_t id = router_.Route(o->key, std::move(o->head), std::move(o->args),
                              [this, o](router::RouteResult&& r) { OnRouted(o, std::move(r)); });
  if (o->stage == Outgoing::Stage::kRouted) o->router_id = id;
}

void ReplicaHandleRuntime::OnRouted(const OutgoingPtr& o, router::RouteResult&& r) {
  if (o->stage != Outgoing::Stage::kRouted) return;
  o->router_id = 0;
  if (o->response || r.code != router::RouteResult::Code::kOk || !r.head.ok()) {
    Complete(o, ToCallResult(r));
    return;
  }
  if (!r.stream) {
    detail::CallResult c;
    c.code = detail::CallResult::Code::kError;
    c.error_type = "TypeError";
    c.error_message = "the method does not stream; call remote() instead";
    Complete(o, c);
    return;
  }
  // Pump the chunks into the caller's stream as they arrive; the call stays a child of its
  // request (cancellable) until the stream ends.
  o->stage = Outgoing::Stage::kStreaming;
  o->chunks = r.stream;
  boost::asio::co_spawn(
      io_,
      [this, o]() -> boost::asio::awaitable<void> {
        std::shared_ptr<rpc::ChunkQueue> q = o->chunks;
        while (std::optional<std::string> item = co_await q->Next()) {
          o->stream->Push(std::move(*item));
        }
        detail::CallResult end;
        if (!q->error().empty()) {
          end.code = detail::CallResult::Code::kError;
          auto colon = q->error().find(": ");
          end.error_type = q->error().substr(0, colon);
          end.error_message =
              colon == std::string::npos ? q->error() : q->error().substr(colon + 2);
        }
        Complete(o, end);
      },
      boost::asio::detached);
}

void ReplicaHandleRuntime::Cancel(const OutgoingPtr& o) {
  auto cancelled = [&] {
    return detail::CallResult::Failure(detail::CallResult::Code::kCancelled,
                   "Request " + o->request_id + " was cancelled.");
  };
  switch (o->stage) {
    case Outgoing::Stage::kDone:
      return;
    case Outgoing::Stage::kHeld:
      if (auto it = held_.find(o->key); it != held_.end()) {
        auto& calls = it->second.calls;
        calls.erase(std::remove(calls.begin(), calls.end(), o), calls.end());
      }
      [[fallthrough]];
    case Outgoing::Stage::kResolving:
      Complete(o, cancelled());
      return;
    case Outgoing::Stage::kRouted:
      router_.Cancel(o->router_id);  // OnRouted completes it as cancelled
      return;
    case Outgoing::Stage::kStreaming:
      // Stops the generator on its replica (kCancel); the pump ends with the stream's end.
      o->chunks->Cancel();
      o->stream->Finish(cancelled());
      return;
  }
}

void ReplicaHandleRuntime::Complete(const OutgoingPtr& o, const detail::CallResult& result) {
  if (o->stage == Outgoing::Stage::kDone) return;
  o->stage = Outgoing::Stage::kDone;
  Untrack(*o);
  if (o->response) {
    o->response->Complete(result);
  } else {
    o->stream->Finish(result);
  }
}

void ReplicaHandleRuntime::Untrack(Outgoing& o) {
  if (o.child) {
    children_.erase(*o.child);
    o.child.reset();
  }
}

void ReplicaHandleRuntime::OnTargets(const std::string& key) {
  known_.insert(key);
  auto it = held_.find(key);
  if (it == held_.end()) return;
  std::vector<OutgoingPtr> calls = std::move(it->second.calls);
  held_.erase(it);
  for (auto& o : calls) {
    if (o->stage == Outgoing::Stage::kHeld) Send(o);
  }
}

void ReplicaHandleRuntime::ScheduleExistenceCheck(const std::string& key,
                                                  std::chrono::milliseconds delay) {
  Held& held = held_[key];
  if (!held.check) held.check = std::make_unique<boost::asio::steady_timer>(io_);
  held.check->expires_after(delay);
  held.check->async_wait([this, key](boost::system::error_code ec) {
    if (ec) return;
    auto it = held_.find(key);
    if (it == held_.end()) return;
    if (it->second.calls.empty()) {  // all cancelled
      held_.erase(it);
      return;
    }
    it->second.checking = true;
    auto id = DeploymentId::FromKey(key);
    boost::asio::post(blocking_, [this, key, app = id->app, deployment = id->name] {
      std::string missing = MissingMessage(app, deployment);
      boost::asio::post(io_, [this, key, missing] {
        auto it = held_.find(key);
        if (it == held_.end()) return;  // its targets arrived meanwhile
        it->second.checking = false;
        if (missing.empty()) {
          ScheduleExistenceCheck(key, std::chrono::seconds(2));
          return;
        }
        std::vector<OutgoingPtr> calls = std::move(it->second.calls);
        held_.erase(it);
        spdlog::warn("Failing {} call(s) to {}: {}", calls.size(), key, missing);
        for (auto& o : calls) {
          Complete(o, detail::CallResult::Failure(detail::CallResult::Code::kUnavailable, missing));
        }
      });
    });
  });
}

namespace {

// The controller's ServeInstanceDetails, or nullopt when it cannot be reached.
std::optional<nlohmann::json> FetchDetails(const std::string& controller_address) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(controller_address));
  auto ctx = rpc::ContextWithDeadline(10);
  v1::GetDetailsRequest req;
  v1::GetDetailsReply reply;
  if (!stub->GetDetails(ctx.get(), req, &reply).ok()) return std::nullopt;
  auto details = nlohmann::json::parse(reply.json(), nullptr, false);
  if (details.is_discarded()) return std::nullopt;
  return details;
}

}  // namespace

std::string ReplicaHandleRuntime::MissingMessage(const std::string& app,
                                                 const std::string& deployment) {
  std::optional<nlohmann::json> details = FetchDetails(controller_address_);
  if (!details) return "";  // cannot decide: ask again later
  auto apps = details->value("applications", nlohmann::json::object());
  if (!apps.contains(app)) return "Application '" + app + "' does not exist.";
  const nlohmann::json& a = apps[app];
  if (a.value("deployments", nlohmann::json::object()).contains(deployment)) return "";
  if (a.value("status", "") == "DEPLOYING") return "";  // its deployments may not be set yet
  return "Deployment '" + deployment + "' does not exist in application '" + app + "'.";
}

std::string ReplicaHandleRuntime::ResolveIngress(const std::string& app) {
  {
    std::lock_guard lock(ingress_mu_);
    if (auto it = ingress_.find(app); it != ingress_.end()) return it->second;
  }
  std::optional<nlohmann::json> details = FetchDetails(controller_address_);
  if (!details) return "";
  auto apps = details->value("applications", nlohmann::json::object());
  if (!apps.contains(app)) return "";
  std::string ingress = apps[app].value("ingress_deployment", "");
  if (!ingress.empty()) {
    std::lock_guard lock(ingress_mu_);
    ingress_[app] = ingress;
  }
  return ingress;
}

void ReplicaHandleRuntime::CancelChildren(const std::string& request_id) {
  boost::asio::post(io_, [this, request_id] {
    std::vector<OutgoingPtr> calls;
    auto [begin, end] = children_.equal_range(request_id);
    for (auto it = begin; it != end; ++it) calls.push_back(it->second);
    for (auto& o : calls) Cancel(o);
  });
}

}  // namespace serve::replica

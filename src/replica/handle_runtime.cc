#include "replica/handle_runtime.h"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <nlohmann/json.hpp>

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
        }
      });
  thread_ = std::thread([this] { io_.run(); });
}

ReplicaHandleRuntime::~ReplicaHandleRuntime() {
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

bool ReplicaHandleRuntime::Prepare(const detail::CallTarget& target, v1::RequestHead* head,
                                   std::string* key, detail::CallResult* failure) {
  // Child calls carry the request id and route of the request being served (Ray propagates it).
  if (const sdk::RequestContext* ctx = sdk::CurrentRequestContext()) {
    head->set_request_id(ctx->request_id);
    head->set_route(ctx->route);
  } else {
    head->set_request_id(RandomUuid());
  }
  std::string app = target.app.empty() ? app_name_ : target.app;
  std::string deployment = target.deployment;
  if (deployment == detail::kAppIngress) {
    deployment = ResolveIngress(app);
    if (deployment.empty()) {
      failure->code = detail::CallResult::Code::kUnavailable;
      failure->error_message = "Application '" + app + "' does not exist.";
      return false;
    }
  }
  head->set_app_name(app);
  head->set_method(target.method);
  head->set_multiplexed_model_id(target.multiplexed_model_id);
  head->set_stream(target.stream);
  head->set_caller("handle");
  *key = DeploymentId{app, deployment}.Key();
  return true;
}

void ReplicaHandleRuntime::Dispatch(std::string key, bool shield, v1::RequestHead head,
                                    std::string args, router::RouteCallback done) {
  boost::asio::post(io_, [this, key = std::move(key), shield, head = std::move(head),
                          args = std::move(args), done = std::move(done)]() mutable {
    if (watched_.insert(key).second) poll_->Watch(TargetsKey(*DeploymentId::FromKey(key)));
    std::string parent = head.request_id();
    auto slot = std::make_shared<std::multimap<std::string, uint64_t>::iterator>(children_.end());
    auto finished = std::make_shared<bool>(false);
    uint64_t id = router_.Route(key, std::move(head), std::move(args),
                                [this, slot, finished, done = std::move(done)](router::RouteResult&& r) {
                                  *finished = true;
                                  if (*slot != children_.end()) {
                                    children_.erase(*slot);
                                    *slot = children_.end();
                                  }
                                  done(std::move(r));
                                });
    if (id != 0 && !shield && !*finished) *slot = children_.emplace(parent, id);
  });
}

void ReplicaHandleRuntime::Call(const detail::CallTarget& target, std::string encoded_args,
                                std::shared_ptr<detail::ResponseState> state) {
  v1::RequestHead head;
  std::string key;
  detail::CallResult failure;
  if (!Prepare(target, &head, &key, &failure)) {
    if (auto h = state->Complete(std::move(failure))) h.resume();
    return;
  }
  Dispatch(std::move(key), target.shield, std::move(head), std::move(encoded_args),
           [state](router::RouteResult&& r) {
             if (auto h = state->Complete(ToCallResult(r))) h.resume();
           });
}

void ReplicaHandleRuntime::CallStream(const detail::CallTarget& target, std::string encoded_args,
                                      std::shared_ptr<detail::StreamState> stream) {
  v1::RequestHead head;
  std::string key;
  detail::CallResult failure;
  if (!Prepare(target, &head, &key, &failure)) {
    if (auto h = stream->Finish(std::move(failure))) h.resume();
    return;
  }
  Dispatch(std::move(key), target.shield, std::move(head), std::move(encoded_args),
           [this, stream](router::RouteResult&& r) {
             if (r.code != router::RouteResult::Code::kOk || !r.head.ok()) {
               if (auto h = stream->Finish(ToCallResult(r))) h.resume();
               return;
             }
             if (!r.stream) {
               detail::CallResult c;
               c.code = detail::CallResult::Code::kError;
               c.error_type = "TypeError";
               c.error_message = "the method does not stream; call remote() instead";
               if (auto h = stream->Finish(std::move(c))) h.resume();
               return;
             }
             // Pump the chunks into the caller's stream as they arrive.
             boost::asio::co_spawn(
                 io_,
                 [stream, q = r.stream]() -> boost::asio::awaitable<void> {
                   while (std::optional<std::string> item = co_await q->Next()) {
                     if (auto h = stream->Push(std::move(*item))) h.resume();
                   }
                   detail::CallResult end;
                   if (!q->error().empty()) {
                     end.code = detail::CallResult::Code::kError;
                     auto colon = q->error().find(": ");
                     end.error_type = q->error().substr(0, colon);
                     end.error_message =
                         colon == std::string::npos ? q->error() : q->error().substr(colon + 2);
                   }
                   if (auto h = stream->Finish(std::move(end))) h.resume();
                 },
                 boost::asio::detached);
           });
}

std::string ReplicaHandleRuntime::ResolveIngress(const std::string& app) {
  {
    std::lock_guard lock(ingress_mu_);
    if (auto it = ingress_.find(app); it != ingress_.end()) return it->second;
  }
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(controller_address_));
  auto ctx = rpc::ContextWithDeadline(10);
  v1::GetDetailsRequest req;
  v1::GetDetailsReply reply;
  if (!stub->GetDetails(ctx.get(), req, &reply).ok()) return "";
  auto details = nlohmann::json::parse(reply.json(), nullptr, false);
  if (details.is_discarded()) return "";
  auto apps = details.value("applications", nlohmann::json::object());
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
    std::vector<uint64_t> ids;
    auto [begin, end] = children_.equal_range(request_id);
    for (auto it = begin; it != end; ++it) ids.push_back(it->second);
    for (uint64_t id : ids) router_.Cancel(id);
  });
}

}  // namespace serve::replica

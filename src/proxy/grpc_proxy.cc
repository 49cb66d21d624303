#include "proxy/grpc_proxy.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <spdlog/spdlog.h>

#include "common/util.h"
#include "proxy/request_handler.h"
#include "rpc/framed_connection.h"
#include "ray/serve/serve_api.pb.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::proxy {
namespace asio = boost::asio;

namespace {

constexpr std::string_view kApiService = "ray.serve.RayServeAPIService";
constexpr int kMaxConcurrentStreams = 1000;      // calls in flight per connection
constexpr int kMaxConnectionIdleMs = 90 * 1000;  // as the HTTP keep-alive default
constexpr const char* kListApplicationsHint =
    "Please ping /ray.serve.RayServeAPIService/ListApplications for available applications.";

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

const char* CodeName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  int i = static_cast<int>(code);
  return i >= 0 && i < static_cast<int>(std::size(kNames)) ? kNames[i] : "UNKNOWN";
}

std::string Seconds(double s) {
  char t[32];
  std::snprintf(t, sizeof(t), "%g", s);
  return t;
}

}  // namespace

/// What calls share with the proxy, touched only on the executor.
struct GrpcProxy::State {
  State(router::Router& r, asio::any_io_executor e, GrpcProxyOptions o)
      : router(r), executor(std::move(e)), options(std::move(o)) {}
  router::Router& router;
  asio::any_io_executor executor;
  GrpcProxyOptions options;
  std::set<std::string, std::less<>> services;
  std::map<std::string, Route, std::less<>> apps;  // by application name
  bool populated = false;
  bool shutting_down = false;
  ProxyMetrics* metrics = nullptr;
};

namespace {

/// One call from its start until OnDone. gRPC's threads run the reactor callbacks; every
/// decision runs on the executor, which alone calls Finish, so nothing touches the reactor
/// after Finish but gRPC (which deletes it in OnDone).
class Call final : public grpc::ServerGenericBidiReactor {
 public:
  Call(std::shared_ptr<GrpcProxy::State> proxy, grpc::GenericCallbackServerContext* ctx)
      : io_(std::make_shared<Io>()) {
    io_->proxy = std::move(proxy);
    io_->ctx = ctx;
    io_->reactor = this;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    auto io = io_;
    if (!ok) {
      asio::post(io->proxy->executor, [io] {
        io->FinishWith(grpc::Status(grpc::StatusCode::INTERNAL, "No request message received."));
      });
      return;
    }
    asio::post(io->proxy->executor, [io, body = ToString(request_)]() mutable {
      io->Dispatch(std::move(body));
    });
  }

  void OnWriteDone(bool ok) override {
    auto io = io_;
    asio::post(io->proxy->executor, [io, ok] { io->WriteDone(ok); });
  }

  void OnCancel() override {
    auto io = io_;
    bool deadline = io->ctx->deadline() <= std::chrono::system_clock::now();
    asio::post(io->proxy->executor, [io, deadline] { io->Cancel(deadline ? "timeout" : "cancel"); });
  }

  void OnDone() override { delete this; }

 private:
  /// The executor's side of the call.
  struct Io : std::enable_shared_from_this<Io> {
    std::shared_ptr<GrpcProxy::State> proxy;
    grpc::GenericCallbackServerContext* ctx = nullptr;
    Call* reactor = nullptr;
    bool finished = false;   // Finish called: reactor and ctx are off limits
    std::string request_id;
    uint64_t route_id = 0;   // the router's id while routed
    std::string early;       // "timeout" or "cancel" once the call ended early
    std::unique_ptr<asio::steady_timer> timer;
    std::shared_ptr<rpc::ChunkQueue> stream;
    // Writes, one at a time.
    std::deque<std::string> writes;
    bool writing = false;
    grpc::ByteBuffer out;
    std::optional<grpc::Status> final_status;

    google::protobuf::RepeatedPtrField<v1::KeyValue> trailing;  // set by the handler
    // Metric tags, filled as the call is matched.
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    bool counted = false;
    std::string method_tag = "OTHER", route, app, deployment;

    void AddTrailers(grpc::StatusCode code) {
      if (counted && proxy->metrics) {
        proxy->metrics->Record(method_tag, route, app, deployment, CodeName(code),
                               code != grpc::StatusCode::OK, start);
      }
      if (timer) timer->cancel();
      for (const auto& kv : trailing) ctx->AddTrailingMetadata(kv.key(), kv.value());
      if (!request_id.empty()) ctx->AddTrailingMetadata("request_id", request_id);
    }
    void FinishWith(const grpc::Status& status) {
      if (finished) return;
      finished = true;
      AddTrailers(status.error_code());
      reactor->Finish(status);
    }
    /// A unary reply: the message and the status in one batch.
    void WriteAndFinish(const std::string& bytes) {
      if (finished) return;
      finished = true;
      AddTrailers(grpc::StatusCode::OK);
      out = ToBuffer(bytes);
      reactor->StartWriteAndFinish(&out, grpc::WriteOptions(), grpc::Status::OK);
    }

    /// Finishes after the queued writes went out.
    void FinishAfterWrites(grpc::Status status) {
      final_status = std::move(status);
      if (!writing && writes.empty()) FinishWith(*final_status);
    }
    void Write(std::string bytes) {
      if (finished) return;
      writes.push_back(std::move(bytes));
      if (!writing) WriteNext();
    }
    void WriteNext() {
      if (writes.empty()) {
        if (final_status) FinishWith(*final_status);
        return;
      }
      writing = true;
      out = ToBuffer(writes.front());
      writes.pop_front();
      reactor->StartWrite(&out);
    }
    void WriteDone(bool ok) {
      writing = false;
      if (finished) return;
      if (!ok) writes.clear();  // the client is gone (OnCancel follows)
      WriteNext();
    }

    void Cancel(const std::string& why) {
      if (finished || !early.empty()) return;
      early = why;
      if (stream) {
        stream->Cancel();  // kCancel to the replica; the pump then ends the call
      } else if (route_id != 0) {
        proxy->router.Cancel(route_id);  // completes the route with kCancelled
      } else {
        FinishWith(CancelledStatus());
      }
    }
    grpc::Status CancelledStatus() const {
      if (early == "timeout") {
        double t = proxy->options.request_timeout_s;
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            "Request " + request_id + " timed out" +
                                (t > 0 ? " after " + Seconds(t) + "s." : "."));
      }
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          "Client for request " + request_id + " disconnected.");
    }

    void Dispatch(std::string body);
    void Answer(router::RouteResult&& result);
    void PumpStream();
    bool ServeApi(const std::string& method);
  };

  std::shared_ptr<Io> io_;
  grpc::ByteBuffer request_;
};

bool Call::Io::ServeApi(const std::string& method) {
  std::string bytes;
  if (method == "ListApplications") {
    ray::serve::ListApplicationsResponse resp;
    for (const auto& [name, route] : proxy->apps) resp.add_application_names(name);
    resp.SerializeToString(&bytes);
  } else if (method == "Healthz") {
    if (proxy->shutting_down) {
      FinishWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, "This node is being drained."));
      return true;
    }
    if (!proxy->populated) {
      FinishWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, "Route table is not populated yet."));
      return true;
    }
    ray::serve::HealthzResponse resp;
    resp.set_message("success");
    resp.SerializeToString(&bytes);
  } else {
    return false;
  }
  WriteAndFinish(bytes);
  return true;
}

void Call::Io::Dispatch(std::string body) {
  if (finished) return;
  // "/pkg.Service/Method"
  const std::string& full = ctx->method();
  size_t slash = full.rfind('/');
  std::string service = slash == std::string::npos || slash == 0 ? "" : full.substr(1, slash - 1);
  std::string method = slash == std::string::npos ? full : full.substr(slash + 1);
  std::string app_name, model_id;
  v1::RequestHead head;
  auto* grpc_head = head.mutable_grpc();
  for (const auto& [k, v] : ctx->client_metadata()) {
    std::string key(k.data(), k.size()), value(v.data(), v.size());
    if (key == "application") app_name = value;
    else if (key == "request_id") request_id = value;
    else if (key == "multiplexed_model_id") model_id = value;
    auto* kv = grpc_head->add_metadata();
    kv->set_key(std::move(key));
    kv->set_value(std::move(value));
  }
  if (request_id.empty()) request_id = RandomUuid();
  bool known = service == kApiService || proxy->services.count(service) > 0;
  if (proxy->metrics) {
    counted = true;
    proxy->metrics->RequestStarted();
    if (known) method_tag = full;  // client input: only accepted services' methods are tags
  }
  if (service == kApiService && ServeApi(method)) return;
  if (proxy->services.find(service) == proxy->services.end()) {
    return FinishWith(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                                   "Method not found: " + full + " (service '" + service +
                                       "' is not in grpc_options.grpc_servicer_functions)."));
  }
  const Route* route = nullptr;
  if (proxy->apps.size() == 1) {
    route = &proxy->apps.begin()->second;  // the only application serves every call
  } else if (app_name.empty()) {
    return FinishWith(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   std::string("Application metadata not set. ") +
                                       kListApplicationsHint));
  } else if (auto it = proxy->apps.find(app_name); it != proxy->apps.end()) {
    route = &it->second;
  }
  if (route == nullptr) {
    return FinishWith(grpc::Status(grpc::StatusCode::NOT_FOUND, "Application '" + app_name +
                                                                    "' not found. " +
                                                                    kListApplicationsHint));
  }
  this->route = route->route_prefix;
  app = route->app_name;
  deployment = route->deployment;
  head.set_request_id(request_id);
  head.set_route(route->route_prefix);
  head.set_app_name(route->app_name);
  head.set_method(method);
  head.set_multiplexed_model_id(model_id);
  grpc_head->set_service(service);
  auto self = shared_from_this();
  route_id = proxy->router.Route(route->key, std::move(head), std::move(body),
                                 [self](router::RouteResult&& r) { self->Answer(std::move(r)); });
  if (finished) return;  // answered at once (unavailable, back-pressure)
  double timeout = proxy->options.request_timeout_s;
  if (timeout > 0) {
    timer = std::make_unique<asio::steady_timer>(proxy->executor);
    timer->expires_after(std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
    timer->async_wait([self](boost::system::error_code ec) {
      if (!ec) self->Cancel("timeout");
    });
  }
}

void Call::Io::Answer(router::RouteResult&& r) {
  route_id = 0;
  if (finished) return;
  using Code = router::RouteResult::Code;
  switch (r.code) {
    case Code::kOk:
      break;
    case Code::kUnavailable:
    case Code::kBackPressure:
      return FinishWith(grpc::Status(grpc::StatusCode::UNAVAILABLE, r.error));
    case Code::kReplicaDied:
      return FinishWith(grpc::Status(grpc::StatusCode::INTERNAL, r.error));
    case Code::kCancelled:
      return FinishWith(CancelledStatus());
  }
  if (!r.head.ok()) {
    return FinishWith(grpc::Status(grpc::StatusCode::INTERNAL,
                                   r.head.error_type() + ": " + r.head.error_message()));
  }
  if (r.stream) {
    stream = std::move(r.stream);
    stream->set_max_queued_bytes(MaxStreamBufferedBytes());
    return PumpStream();
  }
  const v1::GrpcHead& g = r.head.grpc();
  trailing = g.trailing_metadata();
  if (g.code() != 0) {
    return FinishWith(grpc::Status(static_cast<grpc::StatusCode>(g.code()), g.details()));
  }
  WriteAndFinish(r.body);
}

void Call::Io::PumpStream() {
  auto self = shared_from_this();
  asio::co_spawn(
      proxy->executor,
      [self]() -> asio::awaitable<void> {
        while (std::optional<std::string> chunk = co_await self->stream->Next()) {
          self->Write(std::move(*chunk));
        }
        if (!self->early.empty()) co_return self->FinishAfterWrites(self->CancelledStatus());
        if (!self->stream->error().empty()) {
          co_return self->FinishAfterWrites(
              grpc::Status(grpc::StatusCode::INTERNAL, self->stream->error()));
        }
        v1::ResponseHead end;
        std::string_view ignored;
        grpc::Status status = grpc::Status::OK;
        if (rpc::DecodeEnvelope(self->stream->trailer, end, ignored) && end.has_grpc()) {
          self->trailing = end.grpc().trailing_metadata();
          if (end.grpc().code() != 0) {
            status = grpc::Status(static_cast<grpc::StatusCode>(end.grpc().code()),
                                  end.grpc().details());
          }
        }
        self->FinishAfterWrites(std::move(status));
      },
      asio::detached);
}

}  // namespace

class GrpcProxy::Service final : public grpc::CallbackGenericService {
 public:
  explicit Service(std::shared_ptr<State> state) : state_(std::move(state)) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Call(state_, ctx);
  }

 private:
  std::shared_ptr<State> state_;
};

GrpcProxy::GrpcProxy(router::Router& router, asio::any_io_executor executor,
                     GrpcProxyOptions options)
    : state_(std::make_shared<State>(router, std::move(executor), std::move(options))) {
  for (const auto& s : state_->options.services) state_->services.insert(s);
  service_ = std::make_unique<Service>(state_);
}

GrpcProxy::~GrpcProxy() { Shutdown(); }

int GrpcProxy::Start() {
  const GrpcProxyOptions& o = state_->options;
  // Ray Serve's limit on messages both ways, RAY_SERVE_GRPC_MAX_MESSAGE_SIZE (2 GiB - 1).
  int max_size = static_cast<int>(std::min<double>(
      INT_MAX, EnvDouble("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", static_cast<double>(INT_MAX))));
  grpc::ServerBuilder builder;
  int port = 0;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (o.tls) {
    grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_root_certs = o.tls->ca_certs_pem;
    ssl.pem_key_cert_pairs.push_back({o.tls->private_key_pem, o.tls->cert_chain_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  builder.AddListeningPort(o.host + ":" + std::to_string(o.port), credentials, &port);
  builder.SetMaxReceiveMessageSize(max_size);
  builder.SetMaxSendMessageSize(max_size);
  // Listener limits (docs/limits.md): concurrent calls per connection, and idle connections.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, kMaxConnectionIdleMs);
  builder.RegisterCallbackGenericService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    server_.reset();
    throw std::runtime_error("Cannot listen for gRPC on " + o.host + ":" +
                             std::to_string(o.port));
  }
  return port;
}

void GrpcProxy::set_metrics(ProxyMetrics* metrics) { state_->metrics = metrics; }

void GrpcProxy::SetRouteTable(const RouteTable& table) {
  state_->apps.clear();
  for (const Route& r : table.routes()) state_->apps.emplace(r.app_name, r);
  state_->populated = true;
}

void GrpcProxy::Shutdown() {
  if (!server_) return;
  asio::post(state_->executor, [state = state_] { state->shutting_down = true; });
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_.reset();
}

}  // namespace serve::proxy

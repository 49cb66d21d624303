#include "replica/data_server.h"

#include <chrono>
#include <cstring>
#include <condition_variable>
#include <future>

#include <boost/asio/defer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "rpc/auth.h"
#include "rpc/framed_connection.h"
#include "sdk/execution.h"
#include "sdk/host.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::replica {
namespace asio = boost::asio;
using rpc::FrameType;

namespace {

HttpRequest ToHttpRequest(const v1::HttpHead& head, std::string_view body) {
  HttpRequest r;
  r.method = head.method();
  r.path = head.path();
  r.query_string = head.query();
  r.route_prefix = head.route_prefix();
  for (const auto& h : head.headers()) r.headers[h.key()] = h.value();
  r.body.assign(body.data(), body.size());
  return r;
}

// The status, details and trailing metadata a gRPC handler set, for the reply envelope.
void SetGrpcStatus(const GrpcContext& ctx, v1::ResponseHead& head) {
  v1::GrpcHead* g = head.mutable_grpc();
  g->set_code(static_cast<int>(ctx.code()));
  g->set_details(ctx.details());
  for (const auto& [k, v] : ctx.trailing_metadata()) {
    auto* kv = g->add_trailing_metadata();
    kv->set_key(k);
    kv->set_value(v);
  }
}

}  // namespace

/// One request from the moment it is accepted until its reply is sent. It is the request's
/// sdk::Resumer: coroutines suspended in its handler resume as jobs of this server.
struct DataServer::Call final : sdk::Resumer {
  Call(DataServer* server, std::shared_ptr<rpc::FramedConnection> conn, uint64_t id)
      : server(server), conn(std::move(conn)), id(id) {}
  void Resume(std::coroutine_handle<> h) override {
    server->Schedule(Job{std::static_pointer_cast<Call>(shared_from_this()), h, {}});
  }
  std::string_view body() const { return std::string_view(payload).substr(body_offset); }
  void Cancel() {
    cancelled.store(true);
    std::lock_guard lock(window_mu);
    window_cv.notify_all();
  }
  /// The caller acknowledged `bytes` more of this call's stream (kWindowUpdate).
  void Credit(uint64_t bytes) {
    std::lock_guard lock(window_mu);
    acked += bytes;
    window_cv.notify_all();
  }
  /// Flow control of a streamed reply, on the producing thread: after `sent` chunk payload
  /// bytes, waits while more than rpc::kStreamWindowBytes of them are unacknowledged, so a
  /// caller that does not keep up slows the stream down instead of filling this process's
  /// memory. Returns at once when the call is cancelled (or its connection lost).
  void WaitForWindow(uint64_t sent) {
    std::unique_lock lock(window_mu);
    window_cv.wait(lock, [&] {
      return sent - acked <= rpc::kStreamWindowBytes || cancelled.load();
    });
  }

  DataServer* const server;
  const std::shared_ptr<rpc::FramedConnection> conn;
  const uint64_t id;
  v1::RequestHead req;
  std::string payload;  // the request frame; the body is its tail
  size_t body_offset = 0;
  std::atomic<bool> cancelled{false};
  std::mutex window_mu;
  std::condition_variable window_cv;
  uint64_t acked = 0;  // stream bytes the caller consumed; guarded by window_mu
  sdk::RequestContext ctx;  // installed around every job of this call
  std::chrono::steady_clock::time_point start;
  HttpRequest http;  // the input of an HTTP call (kept while a coroutine handler runs)
  // The input of a gRPC call (kept until the reply is sent).
  std::string grpc_request;
  GrpcContext grpc_context;
  detail::GrpcInput grpc_input;
};

DataServer::DataServer(asio::io_context& io, int user_threads, detail::Instance& instance,
                       DataServerOptions options)
    : io_(io), user_threads_(options.serialized ? 1 : std::max(1, user_threads)),
      instance_(instance), options_(std::move(options)), access_log_(options_.access_log),
      acceptor_(io), max_ongoing_(options_.max_ongoing_requests),
      metrics_(options_.app_name, options_.deployment, options_.replica_id) {}

unsigned short DataServer::Listen(const std::string& host) {
  unsigned short port = rpc::ListenOn(acceptor_, host, 0);
  Accept();
  return port;
}

void DataServer::set_max_ongoing_requests(int n) {
  max_ongoing_.store(n);
  if (!options_.serialized && !options_.fixed_threads && n > 0) user_threads_.store(n);
}

void DataServer::Schedule(Job job) {
  {
    std::lock_guard lock(mu_);
    if (running_ >= user_threads_.load(std::memory_order_relaxed)) {
      queued_.push_back(std::move(job));
      return;
    }
    ++running_;
  }
  // A continuation: this thread runs it as soon as the current handler returns, without waking
  // another thread; any other ready handler goes to an idle thread meanwhile. From a thread
  // outside the executor (a resumption), it is posted.
  asio::defer(io_, [this, job = std::move(job)]() mutable { RunJob(std::move(job)); });
}

void DataServer::RunJob(Job job) {
  if (job.fn) {
    job.fn();
  } else if (job.resume) {
    sdk::ScopedRequestContext scope(&job.call->ctx);
    job.resume.resume();
  } else {
    Start(job.call);
  }
  ++finished_;
  Job next;
  {
    std::lock_guard lock(mu_);
    if (queued_.empty()) {
      --running_;
      return;
    }
    next = std::move(queued_.front());
    queued_.pop_front();
  }
  asio::defer(io_, [this, next = std::move(next)]() mutable { RunJob(std::move(next)); });
}

void DataServer::RunUserCode(const std::function<void()>& fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> result = done->get_future();
  Schedule(Job{nullptr, {}, [fn, done] {  // a copy: the wait below may give up first
                 try {
                   fn();
                   done->set_value();
                 } catch (...) {
                   done->set_exception(std::current_exception());
                 }
               }});
  while (result.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    if (io_.stopped()) throw std::runtime_error("the replica is stopping");
  }
  result.get();
}

void DataServer::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](boost::system::error_code ec,
                                                       asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) Accept();
      return;
    }
    boost::system::error_code peer_ec;
    auto peer = socket.remote_endpoint(peer_ec);
    auto conn = std::make_shared<rpc::FramedConnection>(std::move(socket));
    conn->RequireAuth(rpc::ClusterToken(), [peer, peer_ec](const char* why) {
      rpc::LogRefused("data-plane connection from " +
                          (peer_ec ? std::string("an unknown peer")
                                   : peer.address().to_string() + ":" + std::to_string(peer.port())),
                      why);
    });
    std::weak_ptr<rpc::FramedConnection> weak = conn;
    conn->Start(
        [this, weak](rpc::Frame&& frame) {
          auto conn = weak.lock();
          if (!conn) return;
          if (frame.type == FrameType::kProbe) {
            std::string p(4, '\0');
            uint32_t n = static_cast<uint32_t>(ongoing_.load());
            std::memcpy(p.data(), &n, 4);
            conn->Send(FrameType::kProbeReply, frame.id, std::move(p));
            return;
          }
          if (frame.type == FrameType::kWindowUpdate) {
            uint64_t bytes = 0;
            if (frame.payload.size() != 8) return;
            std::memcpy(&bytes, frame.payload.data(), 8);
            std::lock_guard lock(mu_);
            auto it = calls_.find({conn.get(), frame.id});
            if (it != calls_.end()) it->second->Credit(bytes);
            return;
          }
          if (frame.type == FrameType::kCancel) {
            std::string request_id;
            {
              std::lock_guard lock(mu_);
              auto it = calls_.find({conn.get(), frame.id});
              if (it == calls_.end()) return;
              it->second->Cancel();
              request_id = it->second->req.request_id();
            }
            if (options_.on_cancel) options_.on_cancel(request_id);
            return;
          }
          if (frame.type != FrameType::kRequest) return;
          auto call = std::make_shared<Call>(this, conn, frame.id);
          std::string_view body;
          if (!rpc::DecodeEnvelope(frame.payload, call->req, body)) {
            v1::ResponseHead head;
            head.set_accepted(true);
            head.set_error_type("ValueError");
            head.set_error_message("malformed request envelope");
            conn->Send(FrameType::kResponse, frame.id, rpc::EncodeEnvelope(head, {}));
            return;
          }
          bool duplicate;
          {
            std::lock_guard lock(mu_);
            duplicate = calls_.count({conn.get(), frame.id}) > 0;
          }
          if (duplicate) {
            // A peer reusing the id of a call still running here: refused, and the running
            // call keeps its id (routers never reuse one on a connection).
            v1::ResponseHead head;
            head.set_accepted(true);
            head.set_error_type("ValueError");
            head.set_error_message("request id " + std::to_string(frame.id) +
                                   " is already in flight on this connection");
            conn->Send(FrameType::kResponse, frame.id, rpc::EncodeEnvelope(head, {}));
            return;
          }
          int now = ongoing_.load();
          if (draining_ || now >= max_ongoing_.load()) {
            v1::ResponseHead head;
            head.set_accepted(false);
            head.set_num_ongoing(now);
            conn->Send(FrameType::kResponse, frame.id, rpc::EncodeEnvelope(head, {}));
            return;
          }
          metrics_.SetProcessing(++ongoing_);
          // Before any user code runs: from now on the caller fails the request rather than
          // retrying it elsewhere if this replica dies.
          uint64_t accepted_at = conn->Send(FrameType::kAccepted, frame.id, {});
          call->ctx.request_id = call->req.request_id();
          call->ctx.route = call->req.route();
          call->ctx.multiplexed_model_id = call->req.multiplexed_model_id();
          call->ctx.cancelled = &call->cancelled;
          call->ctx.resumer = call.get();
          // The body is moved out of the frame: `body` views its tail.
          call->body_offset = static_cast<size_t>(body.data() - frame.payload.data());
          call->payload = std::move(frame.payload);
          {
            std::lock_guard lock(mu_);
            calls_[{conn.get(), frame.id}] = call;
          }
          // User code starts only once the caller can know it started. Run from the write's
          // completion, the call then goes on this thread with no hand-off and no waiting.
          conn->WhenWritten(accepted_at, [this, call = std::move(call)](bool written) mutable {
            if (!written) {  // connection lost first: the caller retries it elsewhere
              metrics_.SetProcessing(--ongoing_);
              std::lock_guard lock(mu_);
              calls_.erase({call->conn.get(), call->id});
              return;
            }
            Schedule(Job{std::move(call), {}, {}});
          });
        },
        [this, weak] {
          // The caller is gone: its calls are cancelled (a stream waiting for credit ends).
          auto closed = weak.lock();
          if (!closed) return;
          std::lock_guard lock(mu_);
          for (auto& [key, call] : calls_) {
            if (key.first == closed.get()) call->Cancel();
          }
        });
    Accept();
  });
}

void DataServer::Start(const std::shared_ptr<Call>& call) {
  Call& c = *call;
  c.start = std::chrono::steady_clock::now();
  sdk::ScopedRequestContext scope(&c.ctx);
  sdk::HostCall host_call;
  host_call.method = c.req.method();
  if (c.req.has_grpc()) {
    GrpcMetadata metadata;
    for (const auto& kv : c.req.grpc().metadata()) metadata.emplace_back(kv.key(), kv.value());
    c.grpc_context.set_invocation_metadata(std::move(metadata));
    c.grpc_request.assign(c.body());
    c.grpc_input = {&c.grpc_request, &c.grpc_context};
    host_call.grpc = &c.grpc_input;
  } else if (c.req.has_http()) {
    c.http = ToHttpRequest(c.req.http(), c.body());
    host_call.http = &c.http;
  } else {
    host_call.args = c.body();
  }
  host_call.stream = c.req.stream();
  host_call.cancelled = &c.cancelled;
  host_call.request_id = c.req.request_id();
  // A coroutine handler replies from the thread that finishes it.
  sdk::RunCall(instance_, host_call, [this, call](detail::CallOutput&& out,
                                                  std::exception_ptr error) {
    Reply(*call, std::move(out), error);
  });
}

void DataServer::Reply(Call& call, detail::CallOutput&& out, std::exception_ptr error) {
  const v1::RequestHead& req = call.req;
  const std::shared_ptr<rpc::FramedConnection>& conn = call.conn;
  const uint64_t id = call.id;
  // Runs inline when no other thread holds the connection's strand.
  auto send = [&conn, id](FrameType type, std::string payload) {
    asio::dispatch(conn->executor(), [conn, type, id, payload = std::move(payload)]() mutable {
      conn->Send(type, id, std::move(payload));
    });
  };
  sdk::ScopedRequestContext log_scope(&call.ctx);  // log lines carry the request's fields
  v1::ResponseHead head;
  std::string reply_body;
  head.set_accepted(true);
  head.set_num_ongoing(ongoing_.load());
  std::string status_text;
  bool streamed = false;
  bool failed = false;  // the user code threw
  try {
    if (error) std::rethrow_exception(error);
    if (out.stream) {
      // Streaming: head now, one chunk per yielded value, then kEnd (or kError).
      streamed = true;
      head.set_ok(true);
      head.set_streaming(true);
      if (req.has_http()) {
        auto* h = head.mutable_http();
        h->set_status(200);
        auto* kv = h->add_headers();
        kv->set_key("content-type");
        kv->set_value("text/plain; charset=utf-8");
      }
      send(FrameType::kResponseHead, rpc::EncodeEnvelope(head, {}));
      size_t chunks = 0;
      uint64_t sent = 0;
      try {
        while (!call.cancelled.load()) {
          std::optional<Json> item = out.stream();
          if (!item) break;
          std::string chunk = req.has_grpc()   ? item->get<std::string>()
                              : req.has_http() ? sdk::HttpChunk(*item)
                                               : detail::EncodeMsgpack(*item);
          sent += chunk.size();
          send(FrameType::kChunk, std::move(chunk));
          ++chunks;
          call.WaitForWindow(sent);
        }
        std::string end;
        if (req.has_grpc()) {
          v1::ResponseHead status;
          status.set_accepted(true);
          status.set_ok(true);
          SetGrpcStatus(call.grpc_context, status);
          end = rpc::EncodeEnvelope(status, {});
        }
        send(FrameType::kEnd, std::move(end));
        status_text = call.cancelled.load() ? "CANCELLED" : (req.has_http() ? "200" : "OK");
      } catch (...) {
        std::string type;
        std::string what = sdk::ExceptionText(std::current_exception(), &type);
        v1::ResponseHead err;
        err.set_accepted(true);
        err.set_error_type(type);
        err.set_error_message(what);
        send(FrameType::kError, rpc::EncodeEnvelope(err, {}));
        status_text = "ERROR";
        failed = true;
        spdlog::error("Stream failed after {} chunk(s): {}: {}", chunks, type, what);
      }
    } else if (req.has_grpc()) {
      head.set_ok(true);
      SetGrpcStatus(call.grpc_context, head);
      reply_body = out.value.is_string() ? out.value.get<std::string>() : std::string();
      status_text = call.grpc_context.code() == GrpcStatusCode::kOk
                        ? "OK"
                        : std::to_string(static_cast<int>(call.grpc_context.code()));
    } else if (req.has_http()) {
      HttpResponse resp = sdk::ToHttpResponse(std::move(out));
      head.set_ok(true);
      auto* h = head.mutable_http();
      h->set_status(resp.status);
      for (auto& [k, v] : resp.headers) {
        auto* kv = h->add_headers();
        kv->set_key(k);
        kv->set_value(v);
      }
      reply_body = std::move(resp.body);
      status_text = std::to_string(resp.status);
    } else {
      head.set_ok(true);
      reply_body = detail::EncodeMsgpack(out.http ? Json(*out.http) : out.value);
      status_text = "OK";
    }
  } catch (...) {
    std::string type;
    std::string what = sdk::ExceptionText(std::current_exception(), &type);
    head.set_ok(false);
    head.set_error_type(type);
    head.set_error_message(what);
    failed = true;
    if (req.has_http()) {
      HttpResponse resp = sdk::HttpErrorResponse(type, what);
      head.mutable_http()->set_status(resp.status);
      reply_body = std::move(resp.body);
      status_text = std::to_string(resp.status);
    } else {
      status_text = "ERROR";
    }
    if (!call.cancelled.load()) {
      spdlog::error("Request failed: {}: {}", type, what);
    }
  }
  if (call.cancelled.load()) status_text = "CANCELLED";
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                        call.start)
                  .count();
  if (access_log_.load(std::memory_order_relaxed)) {
    std::string verb = req.has_http() ? req.http().method() : req.has_grpc() ? "GRPC" : "CALL";
    std::string what = req.has_http()   ? req.http().path()
                       : req.has_grpc() ? "/" + req.grpc().service() + "/" + req.method()
                                        : req.method();
    spdlog::info("{} {} {} {:.1f}ms", verb, what, status_text, ms);
  }
  if (!streamed) send(FrameType::kResponse, rpc::EncodeEnvelope(head, reply_body));
  metrics_.RequestFinished(req.route(), failed, call.start);
  metrics_.SetProcessing(--ongoing_);
  std::lock_guard lock(mu_);
  calls_.erase({conn.get(), id});
}

}  // namespace serve::replica

#include "replica/data_server.h"

#include <chrono>
#include <typeinfo>

#include <boost/asio/defer.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/spdlog.h>

#include "rpc/framed_connection.h"
#include "sdk/host.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::replica {
namespace asio = boost::asio;
using rpc::FrameType;

namespace {

/// An error reported to the caller with a Ray-style type name instead of the C++ one.
struct TypedError : std::runtime_error {
  TypedError(std::string type, const std::string& what)
      : std::runtime_error(what), type(std::move(type)) {}
  std::string type;
};

std::string ExceptionText(std::exception_ptr e, std::string* type) {
  try {
    std::rethrow_exception(e);
  } catch (const TypedError& ex) {
    *type = ex.type;
    return ex.what();
  } catch (const std::exception& ex) {
    *type = detail::Demangle(typeid(ex).name());
    return ex.what();
  } catch (...) {
    *type = "unknown";
    return "unknown exception";
  }
}

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

// Ray's rule: a str gives text/plain, other values are JSON-encoded.
HttpResponse ToHttpResponse(detail::CallOutput&& out) {
  if (out.http) return std::move(*out.http);
  if (out.value.is_string()) return HttpResponse::text(out.value.get<std::string>());
  return HttpResponse::json(out.value);
}

struct Reply {
  v1::ResponseHead head;
  std::string body;
};

}  // namespace

DataServer::DataServer(asio::io_context& io, int user_threads, detail::Instance& instance,
                       DataServerOptions options)
    : io_(io), user_threads_(std::max(1, user_threads)), instance_(instance),
      options_(std::move(options)), acceptor_(io),
      max_ongoing_(options_.max_ongoing_requests) {}

unsigned short DataServer::Listen(const std::string& host) {
  unsigned short port = rpc::ListenOn(acceptor_, host, 0);
  Accept();
  return port;
}

void DataServer::Schedule(Job job) {
  {
    std::lock_guard lock(mu_);
    if (running_ >= user_threads_) {
      queued_.push_back(std::move(job));
      return;
    }
    ++running_;
  }
  // A continuation: this thread runs it as soon as the read handler returns, without waking
  // another thread; any other ready handler goes to an idle thread meanwhile.
  asio::defer(io_, [this, job = std::move(job)]() mutable { RunJobs(std::move(job)); });
}

void DataServer::RunJobs(Job job) {
  for (;;) {
    job();
    ++finished_;
    std::lock_guard lock(mu_);
    if (queued_.empty()) {
      --running_;
      return;
    }
    job = std::move(queued_.front());
    queued_.pop_front();
  }
}

void DataServer::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](boost::system::error_code ec,
                                                       asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted) Accept();
      return;
    }
    auto conn = std::make_shared<rpc::FramedConnection>(std::move(socket));
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
          if (frame.type == FrameType::kCancel) {
            std::string request_id;
            {
              std::lock_guard lock(mu_);
              auto it = cancels_.find({conn.get(), frame.id});
              if (it == cancels_.end()) return;
              it->second.cancelled->store(true);
              request_id = it->second.request_id;
            }
            if (options_.on_cancel) options_.on_cancel(request_id);
            return;
          }
          if (frame.type != FrameType::kRequest) return;
          auto req = std::make_shared<v1::RequestHead>();
          std::string_view body;
          if (!rpc::DecodeEnvelope(frame.payload, *req, body)) {
            v1::ResponseHead head;
            head.set_accepted(true);
            head.set_error_type("ValueError");
            head.set_error_message("malformed request envelope");
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
          ++ongoing_;
          // Before any user code runs: from now on the caller fails the request rather than
          // retrying it elsewhere if this replica dies.
          uint64_t accepted_at = conn->Send(FrameType::kAccepted, frame.id, {});
          auto cancelled = std::make_shared<std::atomic<bool>>(false);
          {
            std::lock_guard lock(mu_);
            cancels_[{conn.get(), frame.id}] = InFlight{req->request_id(), cancelled};
          }
          // The body is moved out of the frame: `body` views its tail.
          size_t body_offset = static_cast<size_t>(body.data() - frame.payload.data());
          uint64_t id = frame.id;
          auto payload = std::make_shared<std::string>(std::move(frame.payload));
          // User code starts only once the caller can know it started. Run from the write's
          // completion, the call then goes on this thread with no hand-off and no waiting.
          conn->WhenWritten(accepted_at, [this, conn, req, payload, body_offset, id,
                                          cancelled](bool written) {
            if (!written) {  // connection lost first: the caller retries it elsewhere
              --ongoing_;
              std::lock_guard lock(mu_);
              cancels_.erase({conn.get(), id});
              return;
            }
            Schedule([this, conn, req, payload, body_offset, id, cancelled] {
              Execute(conn, *req, std::string_view(*payload).substr(body_offset), id, cancelled);
            });
          });
        },
        [] {});
    Accept();
  });
}

void DataServer::Execute(const std::shared_ptr<rpc::FramedConnection>& conn,
                         const v1::RequestHead& req, std::string_view body, uint64_t id,
                         const std::shared_ptr<std::atomic<bool>>& cancelled) {
  auto start = std::chrono::steady_clock::now();
  // Runs inline when no other thread holds the connection's strand.
  auto send = [conn, id](FrameType type, std::string payload) {
    asio::dispatch(conn->executor(), [conn, type, id, payload = std::move(payload)]() mutable {
      conn->Send(type, id, std::move(payload));
    });
  };
  Reply reply;
  reply.head.set_accepted(true);
  reply.head.set_num_ongoing(ongoing_.load());
  sdk::RequestContext ctx{req.request_id(), req.route(), cancelled.get()};
  sdk::ScopedRequestContext scope(&ctx);
  std::string status_text;
  bool streamed = false;
  try {
    HttpRequest http;
    Json args;
    detail::CallInput in;
    if (req.has_http()) {
      http = ToHttpRequest(req.http(), body);
      in.http = &http;
    } else {
      args = body.empty() ? Json::array() : detail::DecodeMsgpack(std::string(body));
      in.args = &args;
    }
    detail::CallOutput out = instance_.Call(req.method(), in);
    if (out.stream && !req.has_http() && !req.stream()) {
      // As in Ray Serve: a generator must be called as one.
      throw TypedError("TypeError", "Method '" + req.method() +
                                        "' returns a stream; call it with remote_stream() "
                                        "(options(stream=true)).");
    }
    if (out.stream) {
      // Streaming: head now, one chunk per yielded value, then kEnd (or kError).
      streamed = true;
      reply.head.set_ok(true);
      reply.head.set_streaming(true);
      if (req.has_http()) {
        auto* h = reply.head.mutable_http();
        h->set_status(200);
        auto* kv = h->add_headers();
        kv->set_key("content-type");
        kv->set_value("text/plain; charset=utf-8");
      }
      send(FrameType::kResponseHead, rpc::EncodeEnvelope(reply.head, {}));
      size_t chunks = 0;
      try {
        while (!cancelled->load()) {
          std::optional<Json> item = out.stream();
          if (!item) break;
          std::string chunk = !req.has_http() ? detail::EncodeMsgpack(*item)
                              : item->is_string() ? item->get<std::string>()
                                                  : item->dump();
          send(FrameType::kChunk, std::move(chunk));
          ++chunks;
        }
        send(FrameType::kEnd, {});
        status_text = cancelled->load() ? "CANCELLED" : (req.has_http() ? "200" : "OK");
      } catch (...) {
        std::string type;
        std::string what = ExceptionText(std::current_exception(), &type);
        v1::ResponseHead err;
        err.set_accepted(true);
        err.set_error_type(type);
        err.set_error_message(what);
        send(FrameType::kError, rpc::EncodeEnvelope(err, {}));
        status_text = "ERROR";
        spdlog::error("{}_{} {} {} {} -- Stream failed after {} chunk(s): {}: {}",
                      options_.app_name, options_.deployment, options_.replica_id,
                      req.request_id(), req.route(), chunks, type, what);
      }
    } else if (req.has_http()) {
      HttpResponse resp = ToHttpResponse(std::move(out));
      reply.head.set_ok(true);
      auto* h = reply.head.mutable_http();
      h->set_status(resp.status);
      for (auto& [k, v] : resp.headers) {
        auto* kv = h->add_headers();
        kv->set_key(k);
        kv->set_value(v);
      }
      reply.body = std::move(resp.body);
      status_text = std::to_string(resp.status);
    } else {
      reply.head.set_ok(true);
      reply.body = detail::EncodeMsgpack(out.http ? Json(*out.http) : out.value);
      status_text = "OK";
    }
  } catch (...) {
    std::string type;
    std::string what = ExceptionText(std::current_exception(), &type);
    reply.head.set_ok(false);
    reply.head.set_error_type(type);
    reply.head.set_error_message(what);
    if (req.has_http()) {
      reply.head.mutable_http()->set_status(500);
      reply.body = "Internal Server Error\n\n" + type + ": " + what + "\n";
      status_text = "500";
    } else {
      status_text = "ERROR";
    }
    spdlog::error("{}_{} {} {} {} -- Request failed: {}: {}", options_.app_name,
                  options_.deployment, options_.replica_id, req.request_id(), req.route(), type,
                  what);
  }
  if (cancelled->load()) status_text = "CANCELLED";
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                  .count();
  if (options_.access_log) {
    std::string verb = req.has_http() ? req.http().method() : "CALL";
    std::string what = req.has_http() ? req.http().path() : req.method();
    spdlog::info("{}_{} {} {} {} -- {} {} {} {:.1f}ms", options_.app_name, options_.deployment,
                 options_.replica_id, req.request_id(), req.route(), verb, what, status_text, ms);
  }
  if (!streamed) send(FrameType::kResponse, rpc::EncodeEnvelope(reply.head, reply.body));
  --ongoing_;
  std::lock_guard lock(mu_);
  cancels_.erase({conn.get(), id});
}

}  // namespace serve::replica

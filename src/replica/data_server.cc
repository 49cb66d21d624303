#include "replica/data_server.h"

#include <chrono>
#include <typeinfo>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "rpc/framed_connection.h"
#include "sdk/host.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::replica {
namespace asio = boost::asio;
using rpc::FrameType;

namespace {

std::string ExceptionText(std::exception_ptr e, std::string* type) {
  try {
    std::rethrow_exception(e);
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

DataServer::DataServer(asio::io_context& io, asio::thread_pool& user_pool,
                       detail::Instance& instance, DataServerOptions options)
    : io_(io), user_pool_(user_pool), instance_(instance), options_(std::move(options)),
      acceptor_(io), max_ongoing_(options_.max_ongoing_requests) {}

unsigned short DataServer::Listen(const std::string& host) {
  asio::ip::tcp::endpoint ep(asio::ip::make_address(host), 0);
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
  Accept();
  return acceptor_.local_endpoint().port();
}

void DataServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket socket) {
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
          if (frame.type != FrameType::kRequest) return;  // kCancel: sync user code runs on
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
          auto body_copy = std::make_shared<std::string>(body);
          uint64_t id = frame.id;
          asio::post(user_pool_, [this, conn, req, body_copy, id] {
            auto start = std::chrono::steady_clock::now();
            Reply reply;
            reply.head.set_accepted(true);
            reply.head.set_num_ongoing(ongoing_.load());
            sdk::RequestContext ctx{req->request_id(), req->route()};
            sdk::ScopedRequestContext scope(&ctx);
            std::string status_text;
            try {
              if (req->has_http()) {
                HttpRequest http = ToHttpRequest(req->http(), *body_copy);
                detail::CallInput in;
                in.http = &http;
                HttpResponse resp = ToHttpResponse(instance_.Call(req->method(), in));
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
                Json args = body_copy->empty() ? Json::array() : detail::DecodeMsgpack(*body_copy);
                detail::CallInput in;
                in.args = &args;
                detail::CallOutput out = instance_.Call(req->method(), in);
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
              if (req->has_http()) {
                reply.head.mutable_http()->set_status(500);
                reply.body = "Internal Server Error\n\n" + type + ": " + what + "\n";
                status_text = "500";
              } else {
                status_text = "ERROR";
              }
              spdlog::error("{}_{} {} {} {} -- Request failed: {}: {}", options_.app_name,
                            options_.deployment, options_.replica_id, req->request_id(),
                            req->route(), type, what);
            }
            double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start)
                            .count();
            if (options_.access_log) {
              std::string verb = req->has_http() ? req->http().method() : "CALL";
              std::string what = req->has_http() ? req->http().path() : req->method();
              spdlog::info("{}_{} {} {} {} -- {} {} {} {:.1f}ms", options_.app_name,
                           options_.deployment, options_.replica_id, req->request_id(),
                           req->route(), verb, what, status_text, ms);
            }
            std::string payload = rpc::EncodeEnvelope(reply.head, reply.body);
            --ongoing_;
            asio::post(conn->executor(), [conn, id, payload = std::move(payload)]() mutable {
              conn->Send(FrameType::kResponse, id, std::move(payload));
            });
          });
        },
        [] {});
    Accept();
  });
}

}  // namespace serve::replica

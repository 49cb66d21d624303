#include "proxy/request_handler.h"

#include <algorithm>

#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "common/util.h"
#include "proxy/request_mapping.h"

namespace serve::proxy {

namespace {
ProxyResponse Text(int status, std::string body) {
  ProxyResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}
}  // namespace

size_t MaxStreamBufferedBytes() {
  static const size_t bytes = static_cast<size_t>(std::clamp(
      EnvDouble("SERVE_PROXY_STREAM_MAX_BUFFERED_BYTES", 64.0 * 1024 * 1024), 1024.0, 1e12));
  return bytes;
}

void RequestHandler::Handle(ProxyRequest req, std::function<void(ProxyResponse)> done) {
  std::string request_id = RequestIdHeader(req);
  if (request_id.empty()) request_id = RandomUuid();
  // Tags of the request's metrics: filled once the route is matched.
  struct Tags {
    std::string method, route, app, deployment;
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  };
  std::shared_ptr<Tags> tags;
  if (metrics_) {
    tags = std::make_shared<Tags>();
    tags->method = req.method;
    metrics_->RequestStarted();
  }
  ++*ongoing_;
  // Outlives Handle(): runs when the routed request completes.
  auto finish = [request_id, done = std::move(done), metrics = metrics_, tags,
                 ongoing = ongoing_](ProxyResponse r) {
    --*ongoing;
    if (metrics) {
      metrics->RequestFinished(tags->method, tags->route, tags->app, tags->deployment, r.status,
                               tags->start);
    }
    r.request_id = request_id;
    r.headers.emplace_back("x-request-id", request_id);
    done(std::move(r));
  };

  MappedRequest mapped = MapRequest(routes_, req.target);
  const std::string& path = mapped.path;

  if (path == "/-/routes" || path == "/-/healthz") {
    if (!populated_) return finish(Text(503, "Route table is not populated yet."));
    if (path == "/-/healthz") {
      if (draining_) return finish(Text(503, "This node is being drained."));
      return finish(Text(200, "success"));
    }
    nlohmann::json j = nlohmann::json::object();
    for (const auto& r : routes_.routes()) j[r.route_prefix] = r.app_name;
    ProxyResponse resp;
    resp.headers.emplace_back("content-type", "application/json");
    resp.body = j.dump();
    return finish(std::move(resp));
  }

  const Route* route = mapped.route;
  if (!route) {
    return finish(Text(404, "Path '" + path + "' not found. Ping http://" +
                                (req.host.empty() ? "localhost" : req.host) +
                                "/-/routes for available routes."));
  }

  if (tags) {
    tags->route = route->route_prefix;
    tags->app = route->app_name;
    tags->deployment = route->deployment;
  }
  v1::RequestHead head = MakeRequestHead(req, mapped, request_id);
  std::string route_prefix = route->route_prefix;
  // Why the request ended early, if it did: "timeout" -> 408, "disconnect" -> 499.
  auto early = std::make_shared<std::string>();
  std::shared_ptr<boost::asio::steady_timer> timer;
  if (request_timeout_s_ > 0) timer = std::make_shared<boost::asio::steady_timer>(executor_);
  double timeout_s = request_timeout_s_;
  uint64_t id = router_.Route(
      route->key, std::move(head), std::move(req.body),
      [finish, route_prefix, early, timer, timeout_s,
       request_id](router::RouteResult&& result) {
        if (timer) timer->cancel();
        ProxyResponse resp;
        switch (result.code) {
          case router::RouteResult::Code::kOk:
            if (result.head.has_http()) {
              resp.status = result.head.http().status();
              for (auto& kv : result.head.http().headers()) {
                resp.headers.emplace_back(kv.key(), kv.value());
              }
              resp.body = std::move(result.body);
              resp.stream = std::move(result.stream);
              if (resp.stream) resp.stream->set_max_queued_bytes(MaxStreamBufferedBytes());
            } else {
              resp = Text(500, "Internal Server Error\n\n" + result.head.error_type() + ": " +
                                   result.head.error_message() + "\n");
            }
            break;
          case router::RouteResult::Code::kUnavailable:
          case router::RouteResult::Code::kBackPressure:
            resp = Text(503, result.error);
            break;
          case router::RouteResult::Code::kReplicaDied:
            resp = Text(500, "Internal Server Error\n\n" + result.error + "\n");
            break;
          case router::RouteResult::Code::kCancelled:
            if (*early == "timeout") {
              char t[32];
              std::snprintf(t, sizeof(t), "%g", timeout_s);
              resp = Text(408, "Request " + request_id + " timed out after " + t + "s.");
            } else {
              resp.status = 499;  // client disconnected; nothing is sent
            }
            break;
        }
        resp.route = route_prefix;
        finish(std::move(resp));
      });
  if (id == 0) return;  // answered already (unavailable / back-pressure)
  router::Router* router = &router_;
  *req.on_disconnect = [router, id, early] {
    if (early->empty()) *early = "disconnect";
    router->Cancel(id);
  };
  if (timer) {
    timer->expires_after(std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    timer->async_wait([router, id, early](boost::system::error_code ec) {
      if (ec) return;
      if (early->empty()) *early = "timeout";
      router->Cancel(id);
    });
  }
}

}  // namespace serve::proxy

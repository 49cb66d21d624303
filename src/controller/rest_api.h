#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "config/schema.h"
#include "rpc/http_server.h"

namespace serve::controller {

/// What the REST API needs from the controller.
class ControllerApi {
 public:
  virtual ~ControllerApi() = default;
  /// ServeInstanceDetails; `api_type` "" (all), "imperative" or "declarative".
  virtual nlohmann::json Details(const std::string& api_type) = 0;
  /// Declarative deploy: applications not in `config` that were deployed declaratively are
  /// deleted.
  virtual absl::Status ApplyConfig(const config::ServeDeployConfig& config) = 0;
  /// Deletes every application.
  virtual void DeleteAllApplications() = 0;
  virtual std::string SessionName() = 0;
  /// Drains a worker node (see ControlLoop::DrainNode); `deadline_s` <= 0: no deadline.
  virtual absl::Status DrainNode(const std::string& node_id, double deadline_s) = 0;
};

/// Ray Serve's REST API on the dashboard port (spec §12.2), transport-free:
///   GET    /api/serve/applications/[?api_type=imperative|declarative]
///   PUT    /api/serve/applications/      (ServeDeploySchema JSON; 400 on invalid bodies)
///   DELETE /api/serve/applications/
///   POST   /api/serve/nodes/<node id>/drain[?deadline_s=S]   (not in Ray: `serve drain-node`;
///                                         404 unknown node, 409 head or dead node)
///   GET    /api/ray/version
///   GET    /api/serve/metrics            (every node's metrics, Prometheus text; 503 when
///                                         `cluster_metrics` fails, 404 when it is unset)
/// `cluster_metrics` returns the merged metrics of every node (blocking; called on the REST
/// thread).
using MetricsSource = std::function<absl::StatusOr<std::string>()>;
rpc::HttpServerResponse HandleRest(ControllerApi& api, const rpc::HttpServerRequest& request,
                                   const MetricsSource& cluster_metrics = nullptr);

/// A response with `body` and its content-type header.
rpc::HttpServerResponse Reply(int status, std::string body,
                              std::string content_type = "text/plain; charset=utf-8");
/// The value of `name` in a query string ("" when absent; not percent-decoded).
std::string QueryParam(const std::string& query, const std::string& name);

}  // namespace serve::controller

#include "controller/rest_api.h"

#include <cmath>
#include <cstdlib>
#include <string_view>

#include <spdlog/spdlog.h>

#include "config/limits.h"

namespace serve::controller {

rpc::HttpServerResponse Reply(int status, std::string body, std::string content_type) {
  rpc::HttpServerResponse r;
  r.status = status;
  r.headers.emplace_back("content-type", std::move(content_type));
  r.body = std::move(body);
  return r;
}

std::string QueryParam(const std::string& query, const std::string& name) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    std::string part = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    if (part.rfind(name + "=", 0) == 0) return part.substr(name.size() + 1);
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return "";
}

rpc::HttpServerResponse HandleRest(ControllerApi& api, const rpc::HttpServerRequest& req,
                                   const MetricsSource& cluster_metrics) {
  std::string path = req.target, query;
  if (auto q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path.resize(q);
  }
  if (path == "/api/serve/applications" || path == "/api/serve/applications/") {
    if (req.method == "GET") {
      std::string api_type = QueryParam(query, "api_type");
      if (!api_type.empty() && api_type != "imperative" && api_type != "declarative") {
        return Reply(400, "Invalid 'api_type' value: '" + api_type +
                              "'. Must be one of 'imperative' or 'declarative'.");
      }
      return Reply(200, api.Details(api_type).dump(), "application/json");
    }
    if (req.method == "PUT") {
      std::string why;
      auto body = config::limits::ParseBoundedJson(req.body, &why);
      if (body.is_discarded()) return Reply(400, "Request body is not valid JSON: " + why + ".");
      auto config = config::ParseServeDeployConfig(body);
      if (!config.ok()) return Reply(400, std::string(config.status().message()));
      if (auto st = api.ApplyConfig(*config); !st.ok()) return Reply(400, std::string(st.message()));
      return Reply(200, "");
    }
    if (req.method == "DELETE") {
      api.DeleteAllApplications();
      return Reply(200, "");
    }
    return Reply(405, "Method " + req.method + " not allowed.");
  }
  if ((path == "/api/serve/metrics" || path == "/api/serve/metrics/") && cluster_metrics) {
    if (req.method != "GET" && req.method != "HEAD") {
      return Reply(405, "Method " + req.method + " not allowed.");
    }
    absl::StatusOr<std::string> text = cluster_metrics();
    if (!text.ok()) {
      return Reply(503, "Cannot collect metrics: " + std::string(text.status().message()));
    }
    return Reply(200, *std::move(text), "text/plain; version=0.0.4; charset=utf-8");
  }
  if (constexpr std::string_view kNodes = "/api/serve/nodes/";
      path.rfind(kNodes, 0) == 0 && path.size() > kNodes.size() + 6 &&
      path.compare(path.size() - 6, 6, "/drain") == 0) {
    if (req.method != "POST") return Reply(405, "Method " + req.method + " not allowed.");
    std::string node = path.substr(kNodes.size(), path.size() - kNodes.size() - 6);
    double deadline_s = 0;
    if (std::string d = QueryParam(query, "deadline_s"); !d.empty()) {
      char* end = nullptr;
      deadline_s = std::strtod(d.c_str(), &end);
      if (end == d.c_str() || *end != '\0' || !std::isfinite(deadline_s) || deadline_s < 0 ||
          deadline_s > config::limits::kMaxDurationS) {
        return Reply(400, "Invalid 'deadline_s' value: '" + d +
                              "'. Must be a number of seconds between 0 and 10000000.");
      }
    }
    absl::Status st = api.DrainNode(node, deadline_s);
    if (st.ok()) return Reply(200, "");
    int code = st.code() == absl::StatusCode::kNotFound ? 404 : 409;
    return Reply(code, std::string(st.message()));
  }
  if (path == "/api/ray/version" && req.method == "GET") {
    nlohmann::json v = {{"version", "4"}, {"ray_version", "0.1.0"}, {"ray_commit", ""},
                        {"serve_version", "0.1.0"}, {"session_name", api.SessionName()}};
    return Reply(200, v.dump(), "application/json");
  }
  return Reply(404, "Not found: " + path);
}

}  // namespace serve::controller

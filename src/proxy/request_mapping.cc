#include "proxy/request_mapping.h"

#include <strings.h>

#include <cctype>

namespace serve::proxy {

MappedRequest MapRequest(const RouteTable& routes, const std::string& target) {
  MappedRequest m;
  m.path = target;
  if (auto q = m.path.find('?'); q != std::string::npos) {
    m.query = m.path.substr(q + 1);
    m.path.resize(q);
  }
  m.route = routes.Match(m.path);
  return m;
}

std::string RequestIdHeader(const rpc::HttpServerRequest& req) {
  std::string request_id;
  for (const auto& [k, v] : req.headers) {
    if (k.size() == 12 && strcasecmp(k.c_str(), "x-request-id") == 0) request_id = v;
  }
  return request_id;
}

v1::RequestHead MakeRequestHead(const rpc::HttpServerRequest& req, const MappedRequest& mapped,
                                const std::string& request_id) {
  const Route& route = *mapped.route;
  v1::RequestHead head;
  head.set_request_id(request_id);
  head.set_route(route.route_prefix);
  head.set_app_name(route.app_name);
  head.set_method("__call__");
  auto* http = head.mutable_http();
  http->set_method(req.method);
  http->set_path(mapped.path);
  http->set_query(mapped.query);
  http->set_route_prefix(route.route_prefix);
  for (const auto& [k, v] : req.headers) {
    auto* kv = http->add_headers();
    std::string lower = k;  // ASGI delivers lower-case header names
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    kv->set_key(std::move(lower));
    kv->set_value(v);
    if (strcasecmp(k.c_str(), "serve_multiplexed_model_id") == 0) head.set_multiplexed_model_id(v);
  }
  return head;
}

}  // namespace serve::proxy

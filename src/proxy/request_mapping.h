#pragma once

// How the proxy maps an HTTP request to an application: the route it matches and the
// RequestHead its ingress deployment receives. Pure functions (no I/O).

#include <string>

#include "proxy/route_table.h"
#include "rpc/http_server.h"
#include "serve/v1/dataplane.pb.h"

namespace serve::proxy {

/// An HTTP request's target split and matched against the route table.
struct MappedRequest {
  std::string path;              ///< the target before the first '?'
  std::string query;             ///< the target after the first '?' ("" when none)
  const Route* route = nullptr;  ///< longest-prefix match of `path` (valid while the table
                                 ///< lives); nullptr: no application serves it (404)
};

MappedRequest MapRequest(const RouteTable& routes, const std::string& target);

/// The value of the request's X-Request-ID header (name matched case-insensitively; the last
/// one wins), or "" when it has none.
std::string RequestIdHeader(const rpc::HttpServerRequest& req);

/// The head sent to `mapped.route`'s ingress (which must be set): request id, route and app,
/// method "__call__", and the HTTP method, path, query, route prefix and headers (names
/// lower-cased, as ASGI delivers them); a serve_multiplexed_model_id header sets the
/// multiplexed model id.
v1::RequestHead MakeRequestHead(const rpc::HttpServerRequest& req, const MappedRequest& mapped,
                                const std::string& request_id);

}  // namespace serve::proxy

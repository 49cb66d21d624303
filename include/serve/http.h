#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <serve/json.h>
#include <serve/version.h>

namespace serve {

/// Case-insensitive header map (HTTP field names are case-insensitive).
struct SERVE_EXPORT HeaderLess {
  bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::map<std::string, std::string, HeaderLess>;

/// An HTTP request as the ingress deployment sees it (Starlette's Request in Ray Serve).
struct SERVE_EXPORT HttpRequest {
  std::string method = "GET";
  std::string path = "/";        ///< Full path, without the query string.
  std::string query_string;      ///< Raw query string, without '?'.
  std::string route_prefix;      ///< The matched route prefix ("/" for the root).
  Headers headers;
  std::string body;

  /// Decoded query parameters (repeated keys keep every value, in order).
  std::vector<std::pair<std::string, std::string>> query_params() const;
  /// First value of query parameter `name`, or `fallback`.
  std::string query(const std::string& name, const std::string& fallback = "") const;
  /// Header value or `fallback`.
  std::string header(const std::string& name, const std::string& fallback = "") const;
  /// Body as text.
  const std::string& text() const { return body; }
  /// Body parsed as JSON. Throws std::invalid_argument when the body is not valid JSON.
  Json json() const;
};

/// An HTTP response returned by a deployment. Returning a std::string from a handler gives
/// text/plain; returning any other serialisable value gives application/json.
struct SERVE_EXPORT HttpResponse {
  int status = 200;
  Headers headers;
  std::string body;

  static HttpResponse text(std::string body, int status = 200);
  static HttpResponse json(const Json& value, int status = 200);
};

SERVE_EXPORT void to_json(Json& j, const HttpRequest& r);
SERVE_EXPORT void from_json(const Json& j, HttpRequest& r);
SERVE_EXPORT void to_json(Json& j, const HttpResponse& r);
SERVE_EXPORT void from_json(const Json& j, HttpResponse& r);

}  // namespace serve

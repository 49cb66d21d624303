// Fuzzes the proxy's request mapping (proxy/request_mapping.h, proxy/route_table.h). Input,
// line by line: the request target, the method, then "R <prefix> <app>" route lines and
// "H <name>:<value>" header lines (any bytes; route lines that are not UTF-8 are skipped). Checks the match against a brute-force longest-prefix
// reference and the RequestHead against the request (and its protobuf round trip).

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config/limits.h"
#include "proxy/request_mapping.h"
#include "fuzz_check.h"

namespace {
using serve::proxy::Route;


bool Matches(std::string_view prefix, std::string_view path) {
  if (prefix.empty() || path.substr(0, prefix.size()) != prefix) return false;
  return prefix.back() == '/' || path.size() == prefix.size() || path[prefix.size()] == '/';
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty() && lines.size() < 64) {
    size_t nl = text.find('\n');
    lines.emplace_back(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  }
  return lines;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> lines = Lines({reinterpret_cast<const char*>(data), size});
  if (lines.size() < 2) return 0;
  serve::rpc::HttpServerRequest req;
  req.target = lines[0];
  req.method = lines[1];
  std::vector<Route> routes;
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::string& l = lines[i];
    // Routes come from a parsed config: valid UTF-8.
    if (l.rfind("R ", 0) == 0 &&
        serve::config::limits::UnacceptableYamlCharOffset(l) == std::string::npos) {
      size_t sp = l.find(' ', 2);
      std::string prefix = l.substr(2, sp == std::string::npos ? std::string::npos : sp - 2);
      std::string app = sp == std::string::npos ? "" : l.substr(sp + 1);
      routes.push_back({prefix, app, "Ingress"});
    } else if (l.rfind("H ", 0) == 0) {
      size_t colon = l.find(':', 2);
      req.headers.emplace_back(l.substr(2, colon == std::string::npos ? colon : colon - 2),
                               colon == std::string::npos ? "" : l.substr(colon + 1));
    }
  }
  serve::proxy::RouteTable table(routes);
  serve::proxy::MappedRequest m = serve::proxy::MapRequest(table, req.target);
  CHECK(m.path.find('?') == std::string::npos);
  CHECK(m.query.empty() ? (req.target == m.path || req.target == m.path + "?")
                        : req.target == m.path + "?" + m.query);

  // Reference: the longest matching prefix (the first of equal length in the given order).
  const Route* best = nullptr;
  for (const Route& r : table.routes()) {
    if (Matches(r.route_prefix, m.path) &&
        (!best || r.route_prefix.size() > best->route_prefix.size())) {
      best = &r;
    }
  }
  CHECK(m.route == best);
  if (!m.route) return 0;
  CHECK(m.route->key == m.route->app_name + "#" + m.route->deployment);

  std::string request_id = serve::proxy::RequestIdHeader(req);
  serve::v1::RequestHead head = serve::proxy::MakeRequestHead(req, m, request_id);
  CHECK(head.request_id() == request_id);
  CHECK(head.app_name() == m.route->app_name && head.route() == m.route->route_prefix);
  CHECK(head.http().path() == m.path && head.http().query() == m.query);
  CHECK(head.http().headers_size() == static_cast<int>(req.headers.size()));
  for (const auto& kv : head.http().headers()) {
    for (char c : kv.key()) CHECK(!std::isupper(static_cast<unsigned char>(c)));
  }
  serve::v1::RequestHead back;
  CHECK(back.ParseFromString(head.SerializeAsString()));
  CHECK(back.http().path() == head.http().path() &&
        back.multiplexed_model_id() == head.multiplexed_model_id());
  return 0;
}

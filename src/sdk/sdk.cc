// libserve.so core: the factory/application registries and building an application, the
// replica/request context, HTTP request/response helpers and the user logger. Options
// (de)serialization is in options.cc, the handle/response/stream machinery in handles.cc.

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include <serve/grpc.h>

#include "sdk/host.h"
#include "sdk/sdk_internal.h"

namespace serve {

thread_local const sdk::RequestContext* tls_request_context = nullptr;

namespace {

struct Registries {
  std::mutex mu;
  std::unordered_map<std::string, detail::Factory> factories;
  std::map<std::string, sdk::AppEntry> apps;
};
Registries& GetRegistries() {
  static Registries* r = new Registries();  // never destroyed: used from static init/exit
  return *r;
}

std::optional<ReplicaContext>& ReplicaContextSlot() {
  static std::optional<ReplicaContext> context;
  return context;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

bool HeaderLess::operator()(const std::string& a, const std::string& b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) < std::tolower(static_cast<unsigned char>(y));
  });
}

std::vector<std::pair<std::string, std::string>> HttpRequest::query_params() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::string_view q = query_string;
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(UrlDecode(part), "");
    } else {
      out.emplace_back(UrlDecode(part.substr(0, eq)), UrlDecode(part.substr(eq + 1)));
    }
  }
  return out;
}

std::string HttpRequest::query(const std::string& name, const std::string& fallback) const {
  for (auto& [k, v] : query_params()) {
    if (k == name) return v;
  }
  return fallback;
}

std::string HttpRequest::header(const std::string& name, const std::string& fallback) const {
  auto it = headers.find(name);
  return it == headers.end() ? fallback : it->second;
}

Json HttpRequest::json() const {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw std::invalid_argument("request body is not valid JSON");
  return j;
}

HttpResponse HttpResponse::text(std::string body, int status) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::json(const Json& value, int status) {
  HttpResponse r;
  r.status = status;
  r.headers["content-type"] = "application/json";
  r.body = value.dump();
  return r;
}

void to_json(Json& j, const HttpRequest& r) {
  j = Json{{"method", r.method}, {"path", r.path}, {"query_string", r.query_string},
           {"route_prefix", r.route_prefix}, {"headers", Json::object()}, {"body", r.body}};
  for (auto& [k, v] : r.headers) j["headers"][k] = v;
}
void from_json(const Json& j, HttpRequest& r) {
  r.method = j.value("method", "GET");
  r.path = j.value("path", "/");
  r.query_string = j.value("query_string", "");
  r.route_prefix = j.value("route_prefix", "");
  r.body = j.value("body", "");
  r.headers.clear();
  if (auto it = j.find("headers"); it != j.end()) {
    for (auto& [k, v] : it->items()) r.headers[k] = v.get<std::string>();
  }
}
void to_json(Json& j, const HttpResponse& r) {
  j = Json{{"status", r.status}, {"headers", Json::object()}, {"body", r.body}};
  for (auto& [k, v] : r.headers) j["headers"][k] = v;
}
void from_json(const Json& j, HttpResponse& r) {
  r.status = j.value("status", 200);
  r.body = j.value("body", "");
  r.headers.clear();
  if (auto it = j.find("headers"); it != j.end()) {
    for (auto& [k, v] : it->items()) r.headers[k] = v.get<std::string>();
  }
}

std::string Args::get(const std::string& key, const std::string& fallback) const {
  auto it = values_.find(key);
  return it == values_.end() ? fallback : it->second;
}

namespace detail {

Instance::~Instance() = default;

bool RegisterFactory(const char* key, Factory factory) {
  auto& r = GetRegistries();
  std::lock_guard lock(r.mu);
  r.factories[key] = factory;
  return true;
}

bool RegisterApp(const char* name, std::function<Application(const Args&)> builder,
                 bool takes_args) {
  auto& r = GetRegistries();
  std::lock_guard lock(r.mu);
  r.apps[name] = sdk::AppEntry{std::move(builder), takes_args};
  return true;
}

std::string Demangle(const char* mangled) {
  int status = 0;
  char* out = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || out == nullptr) return mangled;
  std::string s(out);
  std::free(out);
  // Drop namespaces for the deployment name, as Ray uses the bare class name.
  if (auto pos = s.rfind("::"); pos != std::string::npos && s.find('<') == std::string::npos) {
    s = s.substr(pos + 2);
  }
  return s;
}

std::string FunctionName(const char* mangled_wrapper) {
  // "serve::detail::FunctionDeployment<&hello>" or "...<&(ns::hello(args))>"
  std::string s = Demangle(mangled_wrapper);
  auto amp = s.find('&');
  if (amp == std::string::npos) return s;
  size_t start = amp + 1;
  if (start < s.size() && s[start] == '(') ++start;
  size_t end = s.find_first_of("(>", start);
  std::string name = s.substr(start, end - start);
  if (auto abi = name.find("[abi:"); abi != std::string::npos) name.resize(abi);
  if (auto pos = name.rfind("::"); pos != std::string::npos) name = name.substr(pos + 2);
  return name;
}

void ThrowBadArity(const std::string& method, size_t want, size_t got) {
  throw std::invalid_argument("'" + method + "' takes " + std::to_string(want) +
                              " argument(s) but " + std::to_string(got) + " were given");
}

void ThrowNotHttp(const std::string& method) {
  throw std::invalid_argument("'" + method +
                              "' cannot serve HTTP: it must take no arguments or one "
                              "serve::HttpRequest");
}

void ThrowGrpcMismatch(const std::string& method, bool grpc_call) {
  if (grpc_call) {
    throw std::invalid_argument("'" + method +
                                "' is not a gRPC method: register it with serve::grpc_method "
                                "(SERVE_GRPC_METHOD)");
  }
  throw std::invalid_argument("'" + method +
                              "' is a gRPC method: it is called through the gRPC proxy");
}

void ThrowGrpcParse(const std::string& method, const char* type) {
  throw std::invalid_argument("'" + method + "': the request is not a valid " + Demangle(type));
}

}  // namespace detail

Json Application::graph_json() const {
  if (!ingress_) throw std::invalid_argument("empty application (nothing was bound)");
  Json deployments = Json::array();
  std::map<std::string, const detail::AppNode*> seen;
  std::vector<const detail::AppNode*> stack = {ingress_.get()};
  while (!stack.empty()) {
    const detail::AppNode* n = stack.back();
    stack.pop_back();
    const std::string& name = *n->options.name;
    if (auto it = seen.find(name); it != seen.end()) {
      if (it->second != n) {
        throw std::invalid_argument("two different deployments are named '" + name +
                                    "'; give one a distinct .name(...)");
      }
      continue;
    }
    seen[name] = n;
    deployments.push_back({{"name", name},
                           {"factory", n->factory_key},
                           {"init_args", n->init_args},
                           {"options", n->options}});
    for (auto it = n->children.rbegin(); it != n->children.rend(); ++it) stack.push_back(it->get());
  }
  return Json{{"ingress", *ingress_->options.name}, {"deployments", deployments}};
}

void to_json(Json& j, const Application& app) {
  if (app.ingress() == nullptr) throw std::invalid_argument("cannot pass an empty application");
  j = Json{{"__serve_handle__", {{"deployment", *app.ingress()->options.name}, {"app", ""}}}};
}

bool is_request_cancelled() {
  const sdk::RequestContext* ctx = tls_request_context;
  return ctx != nullptr && ctx->cancelled != nullptr && ctx->cancelled->load();
}

const ReplicaContext& get_replica_context() {
  if (const sdk::RequestContext* req = tls_request_context; req != nullptr && req->replica) {
    return *req->replica;
  }
  auto& slot = ReplicaContextSlot();
  if (!slot) throw std::logic_error("get_replica_context() may only be called inside a replica");
  return *slot;
}

namespace {
// The replica's log format adds the component and request fields (see
// src/common/log_format.h); the source location becomes filename / lineno / funcName.
void UserLog(spdlog::level::level_enum level, const std::string& message,
             const std::source_location& where) {
  spdlog::default_logger_raw()->log(
      spdlog::source_loc{where.file_name(), static_cast<int>(where.line()),
                         where.function_name()},
      level, spdlog::string_view_t(message));
}
}  // namespace

void Logger::debug(const std::string& m, std::source_location w) const {
  UserLog(spdlog::level::debug, m, w);
}
void Logger::info(const std::string& m, std::source_location w) const {
  UserLog(spdlog::level::info, m, w);
}
void Logger::warning(const std::string& m, std::source_location w) const {
  UserLog(spdlog::level::warn, m, w);
}
void Logger::error(const std::string& m, std::source_location w) const {
  UserLog(spdlog::level::err, m, w);
}
const Logger& logger() {
  static const Logger instance;
  return instance;
}

namespace sdk {

Resumer::~Resumer() = default;

const AppEntry* FindApp(const std::string& name) {
  auto& r = GetRegistries();
  std::lock_guard lock(r.mu);
  auto it = r.apps.find(name);
  return it == r.apps.end() ? nullptr : &it->second;
}

std::vector<std::string> AppNames() {
  auto& r = GetRegistries();
  std::lock_guard lock(r.mu);
  std::vector<std::string> names;
  for (auto& [k, v] : r.apps) names.push_back(k);
  return names;
}

detail::Factory FindFactory(const std::string& key) {
  auto& r = GetRegistries();
  std::lock_guard lock(r.mu);
  auto it = r.factories.find(key);
  return it == r.factories.end() ? nullptr : it->second;
}

void SetReplicaContext(ReplicaContext context) { ReplicaContextSlot() = std::move(context); }

void SetHandleRuntime(HandleRuntime* runtime) { detail::RuntimeSlot().store(runtime); }

const RequestContext* CurrentRequestContext() { return tls_request_context; }

ScopedRequestContext::ScopedRequestContext(const RequestContext* context)
    : previous_(tls_request_context) {
  tls_request_context = context;
}
ScopedRequestContext::~ScopedRequestContext() { tls_request_context = previous_; }

Json BuildApplication(const std::string& name, const Args& args) {
  const AppEntry* entry = FindApp(name);
  if (entry == nullptr) {
    std::string known;
    for (auto& n : AppNames()) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("no application named '" + name +
                                "' is registered in the library (registered: " +
                                (known.empty() ? "none" : known) + ")");
  }
  if (!entry->takes_args && !args.values().empty()) {
    throw std::invalid_argument(
        "Arguments can only be passed to an application builder function (SERVE_APP_BUILDER), "
        "not to an application ('" + name + "')");
  }
  return entry->builder(args).graph_json();
}

}  // namespace sdk
}  // namespace serve

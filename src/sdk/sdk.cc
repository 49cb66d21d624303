#include <cxxabi.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cctype>
#include <deque>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <vector>

#include <spdlog/spdlog.h>

#include "sdk/host.h"

namespace serve {
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
thread_local const sdk::RequestContext* tls_request_context = nullptr;

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

template <class T>
void ReadOpt(const Json& j, const char* key, std::optional<T>& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->template get<T>();
  } catch (const Json::exception& e) {
    throw std::invalid_argument(std::string("field '") + key + "': " + e.what());
  }
}
template <class T>
void WriteOpt(Json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}
template <class T>
void MergeOpt(std::optional<T>& into, const std::optional<T>& from) {
  if (from) into = from;
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

void DeploymentOptions::MergeFrom(const DeploymentOptions& o) {
  MergeOpt(name, o.name);
  // The replica count: what `o` sets replaces what conflicts with it here. Conflicts within `o`
  // itself are kept, for to_json to report.
  if (o.num_replicas) {
    num_replicas = o.num_replicas;
    num_replicas_auto = false;
    if (!o.autoscaling_config) autoscaling_config.reset();
  }
  if (o.num_replicas_auto) {
    num_replicas_auto = true;
    if (!o.num_replicas) num_replicas.reset();
  }
  if (o.autoscaling_config) {
    autoscaling_config = o.autoscaling_config;  // replaced whole, as in Ray
    if (!o.num_replicas) num_replicas.reset();
  }
  MergeOpt(max_ongoing_requests, o.max_ongoing_requests);
  MergeOpt(max_queued_requests, o.max_queued_requests);
  MergeOpt(user_config, o.user_config);
  MergeOpt(health_check_period_s, o.health_check_period_s);
  MergeOpt(health_check_timeout_s, o.health_check_timeout_s);
  MergeOpt(graceful_shutdown_wait_loop_s, o.graceful_shutdown_wait_loop_s);
  MergeOpt(graceful_shutdown_timeout_s, o.graceful_shutdown_timeout_s);
  MergeOpt(ray_actor_options, o.ray_actor_options);  // whole-dict override, as in Ray
  MergeOpt(max_replicas_per_node, o.max_replicas_per_node);
  MergeOpt(logging_config, o.logging_config);
}

void to_json(Json& j, const ActorOptions& o) {
  j = Json::object();
  WriteOpt(j, "num_cpus", o.num_cpus);
  WriteOpt(j, "num_gpus", o.num_gpus);
  WriteOpt(j, "memory", o.memory);
  if (!o.resources.empty()) j["resources"] = o.resources;
}
void from_json(const Json& j, ActorOptions& o) {
  if (!j.is_object()) throw std::invalid_argument("ray_actor_options must be a mapping");
  for (auto& [k, v] : j.items()) {
    if (k != "num_cpus" && k != "num_gpus" && k != "memory" && k != "resources" &&
        k != "runtime_env" && k != "accelerator_type") {
      throw std::invalid_argument("ray_actor_options: unknown field '" + k + "'");
    }
    (void)v;
  }
  ReadOpt(j, "num_cpus", o.num_cpus);
  ReadOpt(j, "num_gpus", o.num_gpus);
  ReadOpt(j, "memory", o.memory);
  if (auto it = j.find("resources"); it != j.end() && !it->is_null()) {
    o.resources = it->get<std::map<std::string, double>>();
  }
}
void to_json(Json& j, const LoggingConfig& o) {
  j = Json{{"encoding", o.encoding}, {"log_level", o.log_level},
           {"logs_dir", o.logs_dir ? Json(*o.logs_dir) : Json(nullptr)},
           {"enable_access_log", o.enable_access_log}};
}
void from_json(const Json& j, LoggingConfig& o) {
  o.encoding = j.value("encoding", "TEXT");
  o.log_level = j.value("log_level", "INFO");
  if (auto it = j.find("logs_dir"); it != j.end() && !it->is_null()) o.logs_dir = it->get<std::string>();
  o.enable_access_log = j.value("enable_access_log", true);
}

void to_json(Json& j, const AutoscalingConfig& o) {
  j = Json::object();
  WriteOpt(j, "min_replicas", o.min_replicas);
  WriteOpt(j, "max_replicas", o.max_replicas);
  WriteOpt(j, "initial_replicas", o.initial_replicas);
  WriteOpt(j, "target_ongoing_requests", o.target_ongoing_requests);
  WriteOpt(j, "metrics_interval_s", o.metrics_interval_s);
  WriteOpt(j, "look_back_period_s", o.look_back_period_s);
  WriteOpt(j, "upscale_delay_s", o.upscale_delay_s);
  WriteOpt(j, "downscale_delay_s", o.downscale_delay_s);
  WriteOpt(j, "downscale_to_zero_delay_s", o.downscale_to_zero_delay_s);
  WriteOpt(j, "smoothing_factor", o.smoothing_factor);
  WriteOpt(j, "upscale_smoothing_factor", o.upscale_smoothing_factor);
  WriteOpt(j, "downscale_smoothing_factor", o.downscale_smoothing_factor);
  WriteOpt(j, "upscaling_factor", o.upscaling_factor);
  WriteOpt(j, "downscaling_factor", o.downscaling_factor);
  WriteOpt(j, "aggregation_function", o.aggregation_function);
  WriteOpt(j, "policy", o.policy);
}
void from_json(const Json& j, AutoscalingConfig& o) {
  if (!j.is_object()) throw std::invalid_argument("autoscaling_config must be a mapping");
  auto read = [&](const char* key, auto& out) {
    try {
      ReadOpt(j, key, out);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("autoscaling_config: ") + e.what());
    }
  };
  read("min_replicas", o.min_replicas);
  read("max_replicas", o.max_replicas);
  read("initial_replicas", o.initial_replicas);
  read("target_ongoing_requests", o.target_ongoing_requests);
  if (!o.target_ongoing_requests) {  // deprecated name
    read("target_num_ongoing_requests_per_replica", o.target_ongoing_requests);
  }
  read("metrics_interval_s", o.metrics_interval_s);
  read("look_back_period_s", o.look_back_period_s);
  read("upscale_delay_s", o.upscale_delay_s);
  read("downscale_delay_s", o.downscale_delay_s);
  read("downscale_to_zero_delay_s", o.downscale_to_zero_delay_s);
  read("smoothing_factor", o.smoothing_factor);
  read("upscale_smoothing_factor", o.upscale_smoothing_factor);
  read("downscale_smoothing_factor", o.downscale_smoothing_factor);
  read("upscaling_factor", o.upscaling_factor);
  read("downscaling_factor", o.downscaling_factor);
  read("aggregation_function", o.aggregation_function);
  read("policy", o.policy);
}

void to_json(Json& j, const DeploymentOptions& o) {
  if (o.num_replicas && o.num_replicas_auto) {
    throw std::invalid_argument("num_replicas: set both to a number and to \"auto\"");
  }
  if (o.num_replicas && o.autoscaling_config) {
    throw std::invalid_argument(
        "num_replicas: manually setting num_replicas is not allowed when autoscaling_config is "
        "provided");
  }
  j = Json::object();
  WriteOpt(j, "name", o.name);
  WriteOpt(j, "num_replicas", o.num_replicas);
  if (o.num_replicas_auto) j["num_replicas"] = "auto";
  WriteOpt(j, "autoscaling_config", o.autoscaling_config);
  WriteOpt(j, "max_ongoing_requests", o.max_ongoing_requests);
  WriteOpt(j, "max_queued_requests", o.max_queued_requests);
  WriteOpt(j, "user_config", o.user_config);
  WriteOpt(j, "health_check_period_s", o.health_check_period_s);
  WriteOpt(j, "health_check_timeout_s", o.health_check_timeout_s);
  WriteOpt(j, "graceful_shutdown_wait_loop_s", o.graceful_shutdown_wait_loop_s);
  WriteOpt(j, "graceful_shutdown_timeout_s", o.graceful_shutdown_timeout_s);
  WriteOpt(j, "ray_actor_options", o.ray_actor_options);
  WriteOpt(j, "max_replicas_per_node", o.max_replicas_per_node);
  WriteOpt(j, "logging_config", o.logging_config);
}
void from_json(const Json& j, DeploymentOptions& o) {
  if (!j.is_object()) throw std::invalid_argument("deployment options must be a mapping");
  ReadOpt(j, "name", o.name);
  if (auto it = j.find("num_replicas"); it != j.end() && it->is_string()) {
    if (*it != "auto") {
      throw std::invalid_argument("field 'num_replicas': must be an integer or \"auto\" (got " +
                                  it->dump() + ")");
    }
    o.num_replicas_auto = true;
  } else {
    ReadOpt(j, "num_replicas", o.num_replicas);
  }
  if (auto it = j.find("autoscaling_config"); it != j.end() && !it->is_null()) {
    o.autoscaling_config = it->get<AutoscalingConfig>();
  }
  if (o.num_replicas && o.autoscaling_config) {
    throw std::invalid_argument(
        "field 'num_replicas': manually setting num_replicas is not allowed when "
        "autoscaling_config is provided");
  }
  ReadOpt(j, "max_ongoing_requests", o.max_ongoing_requests);
  ReadOpt(j, "max_queued_requests", o.max_queued_requests);
  if (auto it = j.find("user_config"); it != j.end() && !it->is_null()) o.user_config = *it;
  ReadOpt(j, "health_check_period_s", o.health_check_period_s);
  ReadOpt(j, "health_check_timeout_s", o.health_check_timeout_s);
  ReadOpt(j, "graceful_shutdown_wait_loop_s", o.graceful_shutdown_wait_loop_s);
  ReadOpt(j, "graceful_shutdown_timeout_s", o.graceful_shutdown_timeout_s);
  if (auto it = j.find("ray_actor_options"); it != j.end() && !it->is_null()) {
    o.ray_actor_options = it->get<ActorOptions>();
  }
  ReadOpt(j, "max_replicas_per_node", o.max_replicas_per_node);
  if (auto it = j.find("logging_config"); it != j.end() && !it->is_null()) {
    o.logging_config = it->get<LoggingConfig>();
  }
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

std::string EncodeMsgpack(const Json& value) {
  std::vector<std::uint8_t> bytes = Json::to_msgpack(value);
  return std::string(bytes.begin(), bytes.end());
}

Json DecodeMsgpack(const std::string& bytes) {
  Json j = Json::from_msgpack(bytes, /*strict=*/true, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw std::invalid_argument("malformed msgpack payload");
  return j;
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

}  // namespace detail

Json Application::ToJson() const {
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

// ------------------------------------------------------------------ handles

namespace {

thread_local bool tls_inline_resume = false;  // inside Task::Get (InlineResumeScope)

// The executor a coroutine suspending on this thread resumes on; null: inline.
std::shared_ptr<sdk::Resumer> CurrentResumer() {
  const sdk::RequestContext* ctx = tls_request_context;
  if (tls_inline_resume || ctx == nullptr || ctx->resumer == nullptr) return nullptr;
  return ctx->resumer->shared_from_this();
}

void ResumeOn(const std::shared_ptr<sdk::Resumer>& resumer, std::coroutine_handle<> h) {
  if (!h) return;
  if (resumer) {
    resumer->Resume(h);
  } else {
    h.resume();
  }
}

detail::CallResult Cancelled(const std::string& why) {
  detail::CallResult r;
  r.code = detail::CallResult::Code::kCancelled;
  r.error_message = why;
  return r;
}

// Resumes sleeping coroutines (serve::sleep_for) at their deadline, or early when their request
// is cancelled (checked every kCancelPoll while such sleepers exist). One thread per process,
// started on first use and never stopped.
class TimerThread {
 public:
  using Clock = std::chrono::steady_clock;
  static TimerThread& Get() {
    static TimerThread* t = new TimerThread();  // never destroyed: sleepers may outlive main
    return *t;
  }
  void Add(Clock::time_point at, std::coroutine_handle<> h, bool* cancelled) {
    Entry e{h, CurrentResumer(), nullptr, cancelled};
    if (const sdk::RequestContext* ctx = tls_request_context; ctx != nullptr && e.resumer) {
      e.flag = ctx->cancelled;  // lives as long as the resumer (the request) we keep
    }
    std::lock_guard lock(mu_);
    bool first = entries_.empty() || at < entries_.begin()->first;
    entries_.emplace(at, std::move(e));
    if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
    if (first) cv_.notify_one();
  }

 private:
  struct Entry {
    std::coroutine_handle<> h;
    std::shared_ptr<sdk::Resumer> resumer;
    const std::atomic<bool>* flag;  // the request's cancel flag, or null
    bool* cancelled;                // in the awaiter
  };
  static constexpr auto kCancelPoll = std::chrono::milliseconds(20);

  void Run() {
    std::unique_lock lock(mu_);
    while (true) {
      if (entries_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto now = Clock::now();
      std::vector<Entry> due;
      bool watch = false;  // some sleeper can be cancelled
      for (auto it = entries_.begin(); it != entries_.end();) {
        bool cancelled = it->second.flag != nullptr && it->second.flag->load();
        if (it->first <= now || cancelled) {
          if (cancelled) *it->second.cancelled = true;
          due.push_back(std::move(it->second));
          it = entries_.erase(it);
        } else {
          watch |= it->second.flag != nullptr;
          ++it;
        }
      }
      if (!due.empty()) {
        lock.unlock();
        for (auto& e : due) ResumeOn(e.resumer, e.h);
        lock.lock();
        continue;
      }
      auto wake = entries_.begin()->first;
      if (watch) wake = std::min(wake, now + kCancelPoll);
      cv_.wait_until(lock, wake);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, Entry> entries_;
  std::thread thread_;
};

}  // namespace

namespace detail {

InlineResumeScope::InlineResumeScope() : previous_(std::exchange(tls_inline_resume, true)) {}
InlineResumeScope::~InlineResumeScope() { tls_inline_resume = previous_; }

void ResumeAfter(std::chrono::nanoseconds delay, std::coroutine_handle<> h, bool* cancelled) {
  TimerThread::Get().Add(std::chrono::steady_clock::now() + std::max(delay, {}), h, cancelled);
}

void ThrowRequestCancelled() {
  const sdk::RequestContext* ctx = tls_request_context;
  throw RequestCancelledError("Request " + (ctx ? ctx->request_id : std::string()) +
                              " was cancelled.");
}

struct ResponseState::Impl {
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::optional<CallResult> result;
  std::coroutine_handle<> waiting;
  std::shared_ptr<sdk::Resumer> resumer;  // where `waiting` resumes
  std::vector<std::function<void()>> when_complete;
  std::function<void()> canceller;
};

ResponseState::ResponseState() : impl_(std::make_unique<Impl>()) {}
ResponseState::~ResponseState() = default;

void ResponseState::Complete(CallResult result) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->result) return;
    impl_->result = std::move(result);
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
    callbacks = std::move(impl_->when_complete);
    impl_->canceller = nullptr;
  }
  for (auto& fn : callbacks) fn();
  ResumeOn(resumer, h);
}

bool ResponseState::Ready() const {
  std::lock_guard lock(impl_->mu);
  return impl_->result.has_value();
}

bool ResponseState::Wait(std::optional<double> timeout_s) const {
  std::unique_lock lock(impl_->mu);
  auto done = [&] { return impl_->result.has_value(); };
  if (!timeout_s) {
    impl_->cv.wait(lock, done);
    return true;
  }
  return impl_->cv.wait_for(lock, std::chrono::duration<double>(*timeout_s), done);
}

bool ResponseState::Suspend(std::coroutine_handle<> h) {
  std::shared_ptr<sdk::Resumer> resumer = CurrentResumer();
  std::lock_guard lock(impl_->mu);
  if (impl_->result) return false;
  impl_->waiting = h;
  impl_->resumer = std::move(resumer);
  return true;
}

const CallResult& ResponseState::result() const {
  std::lock_guard lock(impl_->mu);
  return *impl_->result;
}

void ResponseState::WhenComplete(std::function<void()> fn) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->result) {
      impl_->when_complete.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

bool ResponseState::SetCanceller(std::function<void()> cancel) {
  std::lock_guard lock(impl_->mu);
  if (impl_->result) return false;
  impl_->canceller = std::move(cancel);
  return true;
}

void ResponseState::Cancel() {
  std::function<void()> cancel;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->result) return;
    cancel = impl_->canceller;
  }
  Complete(Cancelled(cancel ? "The request was cancelled."
                            : "The request was cancelled before it was sent."));
  if (cancel) cancel();
}

struct StreamState::Impl {
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> items;
  bool finished = false;
  CallResult failure;
  std::coroutine_handle<> waiting;
  std::shared_ptr<sdk::Resumer> resumer;
  std::function<void()> canceller;
};

StreamState::StreamState() : impl_(std::make_unique<Impl>()) {}
StreamState::~StreamState() = default;

void StreamState::Push(std::string item) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    impl_->items.push_back(std::move(item));
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
  }
  ResumeOn(resumer, h);
}

void StreamState::Finish(CallResult failure) {
  std::coroutine_handle<> h;
  std::shared_ptr<sdk::Resumer> resumer;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    impl_->finished = true;
    impl_->failure = std::move(failure);
    impl_->cv.notify_all();
    h = std::exchange(impl_->waiting, {});
    resumer = std::move(impl_->resumer);
    impl_->canceller = nullptr;
  }
  ResumeOn(resumer, h);
}

bool StreamState::Ready() const {
  std::lock_guard lock(impl_->mu);
  return !impl_->items.empty() || impl_->finished;
}

bool StreamState::Finished() const {
  std::lock_guard lock(impl_->mu);
  return impl_->finished;
}

bool StreamState::Suspend(std::coroutine_handle<> h) {
  std::shared_ptr<sdk::Resumer> resumer = CurrentResumer();
  std::lock_guard lock(impl_->mu);
  if (!impl_->items.empty() || impl_->finished) return false;
  impl_->waiting = h;
  impl_->resumer = std::move(resumer);
  return true;
}

std::optional<std::string> StreamState::Next(std::optional<double> timeout_s) {
  std::unique_lock lock(impl_->mu);
  auto ready = [&] { return !impl_->items.empty() || impl_->finished; };
  if (!timeout_s) {
    impl_->cv.wait(lock, ready);
  } else if (!impl_->cv.wait_for(lock, std::chrono::duration<double>(*timeout_s), ready)) {
    throw TimeoutError("the stream produced no item in time");
  }
  if (!impl_->items.empty()) {
    std::string item = std::move(impl_->items.front());
    impl_->items.pop_front();
    return item;
  }
  if (impl_->failure.code != CallResult::Code::kOk) ThrowCallError(impl_->failure);
  return std::nullopt;
}

bool StreamState::SetCanceller(std::function<void()> cancel) {
  std::lock_guard lock(impl_->mu);
  if (impl_->finished) return false;
  impl_->canceller = std::move(cancel);
  return true;
}

void StreamState::Cancel() {
  std::function<void()> cancel;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->finished) return;
    cancel = impl_->canceller;
  }
  Finish(Cancelled("The stream was cancelled."));
  if (cancel) cancel();
}

std::atomic<sdk::HandleRuntime*>& RuntimeSlot() {
  static std::atomic<sdk::HandleRuntime*> runtime{nullptr};
  return runtime;
}

namespace {

sdk::HandleRuntime* RuntimeFor(const CallTarget& target) {
  sdk::HandleRuntime* runtime = RuntimeSlot().load();
  if (runtime == nullptr) {
    throw ServeException("DeploymentHandle calls are only available inside a replica");
  }
  if (target.deployment.empty()) throw ServeException("calling an empty DeploymentHandle");
  return runtime;
}

// Waits for the upstream calls of a chained call, then sends it (`send`) with their values in
// place, or fails it (`fail`) with the first upstream failure.
struct Chain {
  CallTarget target;
  Json args;
  ChainedArgs upstream;
  sdk::RequestContext context;  // request id and route of the caller
  std::atomic<size_t> remaining{0};
  std::function<void(std::string)> send;
  std::function<void(CallResult)> fail;

  void Arm(const std::shared_ptr<Chain>& self) {
    if (const sdk::RequestContext* ctx = tls_request_context) {
      context.request_id = ctx->request_id;
      context.route = ctx->route;
    }
    remaining = upstream.size();
    std::vector<std::shared_ptr<ResponseState>> states;  // Fire() may run within the loop
    for (auto& [index, state] : upstream) states.push_back(state);
    for (auto& state : states) {
      state->WhenComplete([self] {
        if (--self->remaining == 0) self->Fire();
      });
    }
  }
  void Fire() {
    for (auto& [index, state] : upstream) {
      const CallResult& r = state->result();
      if (r.code != CallResult::Code::kOk) {
        fail(r);
        return;
      }
      Json value = Json::from_msgpack(r.body, /*strict=*/true, /*allow_exceptions=*/false);
      if (value.is_discarded()) {
        CallResult bad;
        bad.code = CallResult::Code::kError;
        bad.error_type = "ValueError";
        bad.error_message = "malformed msgpack payload of a chained response";
        fail(std::move(bad));
        return;
      }
      args[index] = std::move(value);
    }
    upstream.clear();  // drop the upstream results
    sdk::ScopedRequestContext scope(&context);
    send(EncodeMsgpack(args));
  }
};

}  // namespace

std::shared_ptr<ResponseState> StartCall(const CallTarget& target, std::string encoded_args) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<ResponseState>();
  runtime->Call(target, std::move(encoded_args), state);
  return state;
}

std::shared_ptr<StreamState> StartStream(const CallTarget& target, std::string encoded_args) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<StreamState>();
  runtime->CallStream(target, std::move(encoded_args), state);
  return state;
}

std::shared_ptr<ResponseState> StartChainedCall(const CallTarget& target, Json args,
                                                ChainedArgs upstream) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<ResponseState>();
  auto chain = std::make_shared<Chain>();
  chain->target = target;
  chain->args = std::move(args);
  chain->upstream = std::move(upstream);
  // The chain keeps the state: a dropped response is still sent (as in Ray).
  chain->send = [runtime, target, state](std::string encoded) {
    if (state->Ready()) return;  // cancelled meanwhile
    runtime->Call(target, std::move(encoded), state);
  };
  chain->fail = [state](CallResult failure) { state->Complete(std::move(failure)); };
  chain->Arm(chain);
  return state;
}

std::shared_ptr<StreamState> StartChainedStream(const CallTarget& target, Json args,
                                                ChainedArgs upstream) {
  sdk::HandleRuntime* runtime = RuntimeFor(target);
  auto state = std::make_shared<StreamState>();
  auto chain = std::make_shared<Chain>();
  chain->target = target;
  chain->args = std::move(args);
  chain->upstream = std::move(upstream);
  chain->send = [runtime, target, state](std::string encoded) {
    if (state->Finished()) return;  // cancelled meanwhile
    runtime->CallStream(target, std::move(encoded), state);
  };
  chain->fail = [state](CallResult failure) { state->Finish(std::move(failure)); };
  chain->Arm(chain);
  return state;
}

void ThrowCallError(const CallResult& r) {
  switch (r.code) {
    case CallResult::Code::kBackPressure: throw BackPressureError(r.error_message);
    case CallResult::Code::kUnavailable: throw DeploymentUnavailableError(r.error_message);
    case CallResult::Code::kCancelled: throw RequestCancelledError(r.error_message);
    default: throw DeploymentError(r.error_type, r.error_message);
  }
}

}  // namespace detail

DeploymentHandle::DeploymentHandle(std::string deployment, std::string app) {
  target_.deployment = std::move(deployment);
  target_.app = std::move(app);
}

DeploymentHandle DeploymentHandle::method(std::string name) const {
  DeploymentHandle h = *this;
  h.target_.method = std::move(name);
  return h;
}

DeploymentHandle DeploymentHandle::options(const HandleOptions& o) const {
  DeploymentHandle h = *this;
  if (o.method_name) h.target_.method = *o.method_name;
  if (o.multiplexed_model_id) h.target_.multiplexed_model_id = *o.multiplexed_model_id;
  if (o.stream) h.target_.stream = *o.stream;
  if (o.shield) h.target_.shield = *o.shield;
  return h;
}

void to_json(Json& j, const DeploymentHandle& h) {
  j = Json{{"__serve_handle__", {{"deployment", h.deployment_name()}, {"app", h.app_name()}}}};
}

void from_json(const Json& j, DeploymentHandle& h) {
  auto it = j.find("__serve_handle__");
  if (it == j.end() || !it->is_object()) {
    throw std::invalid_argument("expected a bound deployment (DeploymentHandle) argument");
  }
  h = DeploymentHandle(it->value("deployment", ""), it->value("app", ""));
}

DeploymentHandle get_deployment_handle(const std::string& deployment, const std::string& app) {
  return DeploymentHandle(deployment, app);
}

DeploymentHandle get_app_handle(const std::string& app) {
  return DeploymentHandle(detail::kAppIngress, app);
}

bool is_request_cancelled() {
  const sdk::RequestContext* ctx = tls_request_context;
  return ctx != nullptr && ctx->cancelled != nullptr && ctx->cancelled->load();
}

const ReplicaContext& get_replica_context() {
  auto& slot = ReplicaContextSlot();
  if (!slot) throw std::logic_error("get_replica_context() may only be called inside a replica");
  return *slot;
}

namespace {
void UserLog(spdlog::level::level_enum level, const std::string& message) {
  auto& ctx = ReplicaContextSlot();
  const sdk::RequestContext* req = tls_request_context;
  std::string prefix;
  if (ctx) prefix = ctx->app_name + "_" + ctx->deployment + " " + ctx->replica_id + " ";
  if (req) prefix += req->request_id + " " + req->route + " ";
  spdlog::log(level, "{}-- {}", prefix, message);
}
}  // namespace

void Logger::debug(const std::string& m) const { UserLog(spdlog::level::debug, m); }
void Logger::info(const std::string& m) const { UserLog(spdlog::level::info, m); }
void Logger::warning(const std::string& m) const { UserLog(spdlog::level::warn, m); }
void Logger::error(const std::string& m) const { UserLog(spdlog::level::err, m); }
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
  return entry->builder(args).ToJson();
}

}  // namespace sdk
}  // namespace serve

// Deployments that exercise failure paths and request details in the integration tests.
#include <serve/serve.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include <unistd.h>

// Echoes what the replica received.
class Echo {
 public:
  // user_config {"tag": ...} is echoed back, so tests can see in-place updates.
  void reconfigure(const serve::Json& config) {
    std::lock_guard lock(mu_);
    tag_ = config.value("tag", "");
  }
  serve::Json operator()(const serve::HttpRequest& r) {
    if (r.query("fail") == "1") throw std::runtime_error("echo was asked to fail");
    if (auto path = r.query("touch"); !path.empty()) std::ofstream(path) << ::getpid();
    if (auto ms = r.query("sleep_ms"); !ms.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::stoi(ms)));
    }
    if (auto name = r.query("env"); !name.empty()) {
      const char* v = std::getenv(name.c_str());
      return {{"env", v ? serve::Json(v) : serve::Json(nullptr)}};
    }
    if (r.query("cwd") == "1") return {{"cwd", std::filesystem::current_path().string()}};
    serve::Json headers = serve::Json::object();
    for (auto& [k, v] : r.headers) headers[k] = v;
    return {{"method", r.method},
            {"path", r.path},
            {"route_prefix", r.route_prefix},
            {"query", r.query_string},
            {"body_size", r.body.size()},
            {"headers", headers},
            {"replica", serve::get_replica_context().replica_id},
            {"tag", tag()},
            {"pid", static_cast<int>(::getpid())},
            {"deployment", serve::get_replica_context().deployment},
            {"node_id", serve::get_replica_context().node_id},
            {"gpu_ids", serve::get_replica_context().gpu_ids}};
  }

 private:
  std::string tag() {
    std::lock_guard lock(mu_);
    return tag_;
  }
  std::mutex mu_;
  std::string tag_;
};
SERVE_DEPLOYMENT(Echo);

serve::Application echo_builder(const serve::Args& args) {
  return serve::deployment<Echo>()
      .num_replicas(std::stoi(args.get("replicas", "1")))
      .max_ongoing_requests(std::stoi(args.get("max_ongoing", "100")))
      .max_queued_requests(std::stoi(args.get("max_queued", "-1")))
      .bind();
}
SERVE_APP_BUILDER(echo_builder);

// Echo as deployment "Scaled", autoscaling from the builder args (each optional; unset ones keep
// the controller's defaults): min, max, initial, target (target_ongoing_requests), up_delay,
// down_delay, zero_delay (downscale_to_zero_delay_s), look_back, interval (metrics_interval_s);
// max_ongoing (max_ongoing_requests, default 100, or the "auto" default with auto=1); auto=1
// uses num_replicas "auto" with these fields as overrides.
serve::Application autoscale_builder(const serve::Args& args) {
  serve::AutoscalingConfig c;
  auto integer = [&](const char* key, std::optional<int>& out) {
    if (args.contains(key)) out = std::stoi(args.get(key));
  };
  auto number = [&](const char* key, auto& out) {  // a number, or a Duration in seconds
    if (args.contains(key)) out = std::stod(args.get(key));
  };
  integer("min", c.min_replicas);
  integer("max", c.max_replicas);
  integer("initial", c.initial_replicas);
  number("target", c.target_ongoing_requests);
  number("up_delay", c.upscale_delay_s);
  number("down_delay", c.downscale_delay_s);
  number("zero_delay", c.downscale_to_zero_delay_s);
  number("look_back", c.look_back_period_s);
  number("interval", c.metrics_interval_s);
  auto d = serve::deployment<Echo>().name("Scaled");
  if (args.get("auto") == "1") {
    d = d.num_replicas_auto();
    if (c != serve::AutoscalingConfig{}) d = d.autoscaling_config(c);
    if (args.contains("max_ongoing")) {
      d = d.max_ongoing_requests(std::stoi(args.get("max_ongoing")));
    }
  } else {
    d = d.autoscaling_config(c).max_ongoing_requests(std::stoi(args.get("max_ongoing", "100")));
  }
  return d.bind();
}
SERVE_APP_BUILDER(autoscale_builder);

// A constructor that always throws: the deployment must end DEPLOY_FAILED.
class Broken {
 public:
  Broken() { throw std::runtime_error("constructor exploded"); }
  std::string operator()() { return "unreachable"; }
};
SERVE_DEPLOYMENT(Broken);
SERVE_APP(broken, serve::deployment<Broken>().bind());

// A builder that throws: the application must end DEPLOY_FAILED with the message.
serve::Application bad_builder(const serve::Args&) {
  throw std::invalid_argument("builder refused the arguments");
}
SERVE_APP_BUILDER(bad_builder);

// A function deployment.
std::string hello_fn(const serve::HttpRequest& r) { return "fn:" + r.path; }
SERVE_APP(function_app, serve::deployment<&hello_fn>().bind());

// Streams `count` chunks of `size` bytes as fast as it can, until cancelled.
class Firehose {
 public:
  serve::Stream<std::string> operator()(serve::HttpRequest r) {
    int count = std::stoi(r.query("count", "1000"));
    std::string chunk(static_cast<size_t>(std::stoi(r.query("size", "65536"))), 'f');
    for (int i = 0; i < count && !serve::is_request_cancelled(); ++i) co_yield chunk;
  }
};
SERVE_DEPLOYMENT(Firehose);
SERVE_APP(firehose, serve::deployment<Firehose>().bind());

// Health checks: GET /?sick=1 makes check_health() fail from then on.
class Flaky {
 public:
  // A slow start keeps the deployment UNHEALTHY long enough for the test to see it while the
  // replacement starts.
  Flaky() { std::this_thread::sleep_for(std::chrono::milliseconds(500)); }
  serve::Json operator()(const serve::HttpRequest& r) {
    if (r.query("sick") == "1") sick_ = true;
    return {{"replica", serve::get_replica_context().replica_id}, {"pid", static_cast<int>(::getpid())}};
  }
  void check_health() {
    if (sick_) throw std::runtime_error("replica feels sick");
  }

 private:
  std::atomic<bool> sick_{false};
};
SERVE_DEPLOYMENT(Flaky);
SERVE_APP(flaky, serve::deployment<Flaky>().health_check_period_s(0.2).health_check_timeout_s(1).bind());

// Cancellation: Parent awaits Sleeper through a handle; Sleeper works in 10 ms steps and stops
// when its request is cancelled.
class Sleeper {
 public:
  std::string operator()(int ms) {
    for (int waited = 0; waited < ms; waited += 10) {
      if (serve::is_request_cancelled()) return "cancelled";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "slept";
  }
};
SERVE_DEPLOYMENT(Sleeper);

class Parent {
 public:
  explicit Parent(serve::DeploymentHandle sleeper) : sleeper_(std::move(sleeper)) {}
  serve::Task<std::string> operator()(serve::HttpRequest r) {
    int ms = std::stoi(r.query("ms", "100"));
    bool shield = r.query("shield") == "1";
    auto h = sleeper_.options({.shield = shield});
    co_return co_await h.remote<std::string>(ms);
  }

 private:
  serve::DeploymentHandle sleeper_;
};
SERVE_DEPLOYMENT(Parent);
SERVE_APP(cancel_app, serve::deployment<Parent>().bind(serve::deployment<Sleeper>().bind()));

// get_app_handle: calls the ingress of another application.
class AppCaller {
 public:
  serve::Json operator()(const serve::HttpRequest& r) {
    serve::HttpRequest inner;
    inner.path = "/from-caller";
    try {
      return serve::get_app_handle(r.query("app")).remote<serve::Json>(inner).result(10.0);
    } catch (const serve::ServeException& e) {
      return {{"error", e.what()}};
    }
  }
};
SERVE_DEPLOYMENT(AppCaller);
SERVE_APP(app_caller, serve::deployment<AppCaller>().bind());

// Handle streaming: Consumer reads Producer's generator through remote_stream().
class Producer {
 public:
  serve::Stream<int> numbers(int n, int fail_at) {
    for (int i = 0; i < n; ++i) {
      if (i == fail_at) throw std::out_of_range("stopped at " + std::to_string(i));
      co_yield i * i;
    }
  }
  int plain() { return 1; }
};
SERVE_DEPLOYMENT(Producer, serve::method("numbers", &Producer::numbers),
                 serve::method("plain", &Producer::plain));

class Consumer {
 public:
  explicit Consumer(serve::DeploymentHandle producer) : producer_(std::move(producer)) {}
  serve::Json operator()(const serve::HttpRequest& r) {
    serve::Json items = serve::Json::array();
    try {
      if (r.query("unary") == "1") {  // a generator called as a unary method
        return {{"result", producer_.method("numbers").remote<serve::Json>(3, -1).result(10.0)}};
      }
      if (r.query("stream_option") == "1") {  // Ray's spelling: options(stream=true)
        auto h = producer_.options({.method_name = "numbers", .stream = true});
        try {
          (void)h.remote<serve::Json>(3, -1);
        } catch (const std::invalid_argument& e) {
          items.push_back(e.what());
        }
        auto s = h.remote_stream<int>(3, -1);
        while (auto v = s.next(10.0)) items.push_back(*v);
        return {{"items", items}};
      }
      if (r.query("plain") == "1") {
        auto s = producer_.method("plain").remote_stream<int>();
        while (auto v = s.next(10.0)) items.push_back(*v);
      } else {
        auto s = producer_.method("numbers").remote_stream<int>(std::stoi(r.query("n", "5")),
                                                                std::stoi(r.query("fail_at", "-1")));
        while (auto v = s.next(10.0)) items.push_back(*v);
      }
    } catch (const serve::DeploymentError& e) {
      return {{"items", items}, {"error", e.type()}, {"message", e.remote_message()}};
    }
    return {{"items", items}};
  }

 private:
  serve::DeploymentHandle producer_;
};
SERVE_DEPLOYMENT(Consumer);
SERVE_APP(stream_consumer, serve::deployment<Consumer>().bind(serve::deployment<Producer>().bind()));

// The same consumption inside a coroutine handler, without blocking a thread per item.
class AsyncConsumer {
 public:
  explicit AsyncConsumer(serve::DeploymentHandle producer) : producer_(std::move(producer)) {}
  serve::Task<serve::Json> operator()(serve::HttpRequest r) {
    auto s = producer_.method("numbers").remote_stream<int>(std::stoi(r.query("n", "5")), -1);
    serve::Json items = serve::Json::array();
    while (auto v = co_await s.next_async()) items.push_back(*v);
    co_return serve::Json{{"items", items}};
  }

 private:
  serve::DeploymentHandle producer_;
};
SERVE_DEPLOYMENT(AsyncConsumer);
SERVE_APP(async_stream_consumer,
          serve::deployment<AsyncConsumer>().bind(serve::deployment<Producer>().bind()));

// ---- Asynchronous execution (test_async.py) ---------------------------------------------------

#include <pthread.h>

namespace {
std::string ThreadName() {
  char name[32] = {0};
  ::pthread_getname_np(::pthread_self(), name, sizeof(name));
  return name;
}
double MsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

// Sleeps `ms` without holding a thread (a timer resumes it).
class AsyncSleeper {
 public:
  serve::Task<std::string> operator()(int ms) {
    co_await serve::sleep_for(std::chrono::milliseconds(ms));
    co_return "slept";
  }
};
SERVE_DEPLOYMENT(AsyncSleeper);

class Shout {
 public:
  std::string operator()(const std::string& s) { return s + "!"; }
};
SERVE_DEPLOYMENT(Shout);

// A generator that yields 0, 1, ... every `ms` (blocking between items), stopping when its
// request is cancelled.
class Ticker {
 public:
  serve::Stream<int> ticks(int n, int ms) {
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      co_yield i;
    }
  }
};
SERVE_DEPLOYMENT(Ticker, serve::method("ticks", &Ticker::ticks));

// The ingress of async_app; `op` picks the behaviour:
//   fan     awaits AsyncSleeper(ms) and reports the peak of its requests in flight at once and the
//           thread names before and after the co_await
//   chain   AsyncSleeper(ms) chained into Shout: how long issuing the chained call took
//   cancel  calls Sleeper(5000), cancels it after 200 ms and awaits it
//   stream  reads `take` items of Ticker.ticks(n, 20) then drops the stream (all of them with
//           take=-1)
//   lost    calls deployment `deployment` of application `app`
class AsyncIngress {
 public:
  AsyncIngress(serve::DeploymentHandle sleeper, serve::DeploymentHandle shout,
               serve::DeploymentHandle blocking_sleeper, serve::DeploymentHandle ticker)
      : sleeper_(std::move(sleeper)), shout_(std::move(shout)),
        blocking_sleeper_(std::move(blocking_sleeper)), ticker_(std::move(ticker)) {}

  serve::Task<serve::Json> operator()(serve::HttpRequest r) {
    std::string op = r.query("op", "fan");
    int ms = std::stoi(r.query("ms", "1000"));
    auto start = std::chrono::steady_clock::now();
    if (op == "fan") {
      int now = ++in_flight_;
      int peak = peak_.load();
      while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
      }
      std::string before = ThreadName();
      std::string reply;
      std::string error;
      try {
        reply = co_await sleeper_.remote<std::string>(ms);
      } catch (const std::exception& e) {
        error = e.what();
      }
      --in_flight_;
      co_return serve::Json{{"reply", reply}, {"error", error}, {"peak", peak_.load()},
                            {"before", before}, {"after", ThreadName()},
                            {"pid", static_cast<int>(::getpid())}};
    }
    if (op == "chain") {
      serve::DeploymentResponse<std::string> slow = sleeper_.remote<std::string>(ms);
      serve::DeploymentResponse<std::string> chained = shout_.remote<std::string>(slow);
      double issue_ms = MsSince(start);
      std::string value = co_await chained;
      co_return serve::Json{{"value", value}, {"issue_ms", issue_ms}, {"total_ms", MsSince(start)}};
    }
    if (op == "cancel") {
      serve::DeploymentResponse<std::string> slow = blocking_sleeper_.remote<std::string>(5000);
      co_await serve::sleep_for(std::chrono::milliseconds(200));
      slow.cancel();
      std::string error;
      try {
        (void)co_await slow;
      } catch (const serve::RequestCancelledError& e) {
        error = std::string("RequestCancelledError: ") + e.what();
      }
      co_return serve::Json{{"error", error}, {"total_ms", MsSince(start)}};
    }
    if (op == "stream") {
      int take = std::stoi(r.query("take", "3"));
      serve::Json items = serve::Json::array();
      {
        auto s = ticker_.method("ticks").remote_stream<int>(std::stoi(r.query("n", "1000")), 20);
        while (take < 0 || static_cast<int>(items.size()) < take) {
          std::optional<int> v = co_await s.next_async();
          if (!v) break;
          items.push_back(*v);
        }
      }  // the reader stops here: the rest of the stream is cancelled
      co_return serve::Json{{"items", items}};
    }
    if (op == "lost") {
      auto h = serve::get_deployment_handle(r.query("deployment"), r.query("app"));
      std::string error;
      try {
        (void)co_await h.remote<std::string>("x");
      } catch (const serve::DeploymentUnavailableError& e) {
        error = e.what();
      }
      co_return serve::Json{{"error", error}, {"total_ms", MsSince(start)}};
    }
    co_return serve::Json{{"error", "unknown op " + op}};
  }

 private:
  serve::DeploymentHandle sleeper_;
  serve::DeploymentHandle shout_;
  serve::DeploymentHandle blocking_sleeper_;
  serve::DeploymentHandle ticker_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> peak_{0};
};
SERVE_DEPLOYMENT(AsyncIngress);

serve::Application async_builder(const serve::Args& args) {
  int max_ongoing = std::stoi(args.get("max_ongoing", "1000"));
  return serve::deployment<AsyncIngress>()
      .max_ongoing_requests(max_ongoing)
      .bind(serve::deployment<AsyncSleeper>().max_ongoing_requests(max_ongoing).bind(),
            serve::deployment<Shout>().bind(), serve::deployment<Sleeper>().bind(),
            serve::deployment<Ticker>().bind());
}
SERVE_APP_BUILDER(async_builder);

// Concurrency::kSerialized against the default: each request runs two blocking 50 ms steps with
// an asynchronous sleep between them, and counts the steps that overlapped another one.
template <serve::Concurrency C>
class Steps {
 public:
  static constexpr serve::Concurrency serve_concurrency = C;
  serve::Task<serve::Json> operator()(serve::HttpRequest r) {
    int ms = std::stoi(r.query("ms", "300"));
    Step();
    co_await serve::sleep_for(std::chrono::milliseconds(ms));
    Step();
    co_return serve::Json{{"overlaps", overlaps_.load()}, {"thread", ThreadName()}};
  }

 private:
  void Step() {
    if (active_.exchange(true)) ++overlaps_;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    active_ = false;
  }
  std::atomic<bool> active_{false};
  std::atomic<int> overlaps_{0};
};
using SerialSteps = Steps<serve::Concurrency::kSerialized>;
using ConcurrentSteps = Steps<serve::Concurrency::kConcurrent>;
SERVE_DEPLOYMENT(SerialSteps);
SERVE_DEPLOYMENT(ConcurrentSteps);
SERVE_APP(serial_steps, serve::deployment<SerialSteps>().bind());
SERVE_APP(concurrent_steps, serve::deployment<ConcurrentSteps>().bind());

// A deployment with several methods, constructor arguments, a user_config applied through
// reconfigure(), and an application builder that takes `key=value` arguments:
//   serve run greeter:build greeting=Hola replicas=2
#include <serve/serve.h>

#include <atomic>
#include <mutex>
#include <stdexcept>

class Greeter {
 public:
  Greeter(std::string greeting, int repeat) : greeting_(std::move(greeting)), repeat_(repeat) {}

  // user_config arrives here after construction and on every config update.
  void reconfigure(const serve::Json& config) {
    std::lock_guard lock(mu_);
    punctuation_ = config.value("punctuation", "!");
    if (config.contains("greeting")) greeting_ = config["greeting"].get<std::string>();
  }

  // HTTP: GET /?name=Ann -> {"message": "...", "replica": "..."}; POST with JSON {"name": ...}.
  serve::HttpResponse operator()(const serve::HttpRequest& request) {
    if (request.path == request.route_prefix + "/fail" || request.path == "/fail") {
      throw std::runtime_error("asked to fail");
    }
    std::string name = request.query("name", "");
    if (name.empty() && request.method == "POST") name = request.json().value("name", "");
    if (name.empty()) name = "stranger";
    ++served_;
    return serve::HttpResponse::json({{"message", greet(name)},
                                      {"replica", serve::get_replica_context().replica_id},
                                      {"served", served_.load()}});
  }

  // Handle methods (reachable through DeploymentHandle).
  std::string greet(const std::string& name) {
    std::lock_guard lock(mu_);
    std::string out;
    for (int i = 0; i < repeat_; ++i) out += (i ? " " : "") + greeting_ + ", " + name + punctuation_;
    return out;
  }
  int served() const { return served_.load(); }

  void check_health() {
    if (greeting_.empty()) throw std::runtime_error("no greeting configured");
  }

 private:
  std::mutex mu_;
  std::string greeting_;
  int repeat_;
  std::string punctuation_ = "!";
  std::atomic<int> served_{0};
};
SERVE_DEPLOYMENT(Greeter, SERVE_METHOD(&Greeter::greet), SERVE_METHOD(&Greeter::served));

serve::Application build(const serve::Args& args) {
  using namespace std::chrono_literals;
  return serve::deployment<Greeter>({.num_replicas = std::stoi(args.get("replicas", "1")),
                                     .user_config = serve::Json{
                                         {"punctuation", args.get("punctuation", "!")}},
                                     .health_check_period_s = 5s})
      .bind(args.get("greeting", "Hello"), std::stoi(args.get("repeat", "1")));
}
SERVE_APP_BUILDER(build);

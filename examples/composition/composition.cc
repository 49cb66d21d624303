// Model composition with DeploymentHandles ("Deploy Compositions of Models"):
//   serve run composition:translate            GET /?lang=es&name=Ann -> "Hola Ann!"
//   serve run composition:arithmetic_builder   GET /?x=3              -> {"result": 8}   ((3+1)*2)
// (with --app-dir build/examples/composition from the serve checkout)
#include <serve/serve.h>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

// ---------------------------------------------------------------- language routing

class SpanishResponder {
 public:
  std::string operator()(const std::string& name) { return "Hola " + name + "!"; }
};
SERVE_DEPLOYMENT(SpanishResponder);

class FrenchResponder {
 public:
  std::string operator()(const std::string& name) { return "Bonjour " + name + "!"; }
};
SERVE_DEPLOYMENT(FrenchResponder);

// The ingress classifies the request and forwards it; a coroutine handler awaits the reply.
// Typed handles (serve::Handle<T>) know each responder's class: remote() calls operator() and
// its result type (std::string) is deduced.
class LanguageClassifier {
 public:
  LanguageClassifier(serve::Handle<SpanishResponder> spanish, serve::Handle<FrenchResponder> french)
      : spanish_(std::move(spanish)), french_(std::move(french)) {}

  serve::Task<serve::HttpResponse> operator()(serve::HttpRequest request) {
    std::string lang = request.query("lang", "es");
    std::string name = request.query("name", "friend");
    if (lang != "es" && lang != "fr") {
      co_return serve::HttpResponse::text("unsupported language '" + lang + "'", 400);
    }
    std::string reply;
    if (lang == "es") {
      reply = co_await spanish_.remote(name);
    } else {
      reply = co_await french_.remote(name);
    }
    co_return serve::HttpResponse::text(reply);
  }

 private:
  serve::Handle<SpanishResponder> spanish_;
  serve::Handle<FrenchResponder> french_;
};
SERVE_DEPLOYMENT(LanguageClassifier);

SERVE_APP(translate, serve::deployment<LanguageClassifier>().bind(
                         serve::deployment<SpanishResponder>().bind(),
                         serve::deployment<FrenchResponder>().bind()));

// ---------------------------------------------------------------- chaining

class Adder {
 public:
  explicit Adder(int increment) : increment_(increment) {}
  int operator()(int x) { return x + increment_; }

 private:
  int increment_;
};
SERVE_DEPLOYMENT(Adder);

class Multiplier {
 public:
  explicit Multiplier(int factor) : factor_(factor) {}
  int operator()(int x) {
    if (x < 0) throw std::domain_error("negative input " + std::to_string(x));
    return x * factor_;
  }
  int factor() const { return factor_; }

 private:
  int factor_;
};
SERVE_DEPLOYMENT(Multiplier, SERVE_METHOD(&Multiplier::factor));

// A synchronous handler: the Adder's response is passed straight to the Multiplier (chaining);
// .result() blocks this request's thread until the chain finishes.
class Calculator {
 public:
  Calculator(serve::Handle<Adder> adder, serve::Handle<Multiplier> multiplier)
      : adder_(std::move(adder)), multiplier_(std::move(multiplier)) {}

  serve::Json operator()(const serve::HttpRequest& request) {
    int x = std::stoi(request.query("x", "0"));
    serve::DeploymentResponse<int> sum = adder_.remote(x);
    serve::DeploymentResponse<int> product = multiplier_.remote(sum);
    try {
      int factor = multiplier_.call<&Multiplier::factor>().result(10s);
      return {{"result", product.result(10s)}, {"factor", factor}};
    } catch (const serve::DeploymentError& e) {
      return {{"error", e.type()}, {"message", e.remote_message()}};
    }
  }

 private:
  serve::Handle<Adder> adder_;
  serve::Handle<Multiplier> multiplier_;
};
SERVE_DEPLOYMENT(Calculator);

serve::Application arithmetic_builder(const serve::Args& args) {
  return serve::deployment<Calculator>().bind(
      serve::deployment<Adder>().bind(std::stoi(args.get("increment", "1"))),
      serve::deployment<Multiplier>({.num_replicas = 2}).bind(std::stoi(args.get("factor", "2"))));
}
SERVE_APP_BUILDER(arithmetic_builder);

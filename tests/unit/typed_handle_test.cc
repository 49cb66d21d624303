// Unit tests of the typed handle (serve::Handle<T>) and of method registration by member pointer
// (SERVE_METHOD / serve::method<M>()): names read from member pointers, result types deduced
// from signatures (checked at compile time), and calls carried through a HandleRuntime that runs
// the deployment in this process, so the name a handle sends is the name the instance knows.

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <serve/serve.h>

#include "sdk/host.h"
#include "sdk_test_support.h"

using namespace std::chrono_literals;

class TypedTranslator {
 public:
  explicit TypedTranslator(std::string greeting) : greeting_(std::move(greeting)) {}
  std::string translate(const std::string& text) const { return greeting_ + " " + text; }
  int length(std::string text) { return static_cast<int>(text.size()); }
  serve::Task<std::string> shout(std::string text) {
    for (char& c : text) c = static_cast<char>(toupper(c));
    co_return text + "!";
  }
  serve::Stream<int> count(int n) {
    for (int i = 0; i < n; ++i) co_yield i;
  }
  void touch() { ++touched_; }
  int touched() const { return touched_; }
  int operator()(int x) { return 2 * x; }

 private:
  std::string greeting_;
  int touched_ = 0;
};
SERVE_DEPLOYMENT(TypedTranslator, SERVE_METHOD(&TypedTranslator::translate),
                 SERVE_METHOD(&TypedTranslator::length), SERVE_METHOD(&TypedTranslator::shout),
                 SERVE_METHOD(&TypedTranslator::count), serve::method<&TypedTranslator::touch>(),
                 serve::method<&TypedTranslator::touched>());

namespace typed_ns {
template <class X>
struct Box {
  X get() const { return X{}; }
  template <class U>
  U as() const {
    return U{};
  }
  virtual ~Box() = default;
  virtual int size() { return 0; }
};
}  // namespace typed_ns

// ---- compile time: names and result types -------------------------------------------------

static_assert(serve::method_name<&TypedTranslator::translate>() == "translate");
static_assert(serve::method_name<&TypedTranslator::operator()>() == "__call__");
static_assert(serve::method_name<&typed_ns::Box<typed_ns::Box<int>>::get>() == "get");
static_assert(serve::method_name<&typed_ns::Box<int>::size>() == "size");  // virtual
static_assert(serve::method_name<&typed_ns::Box<int>::as<std::vector<int>>>() == "as");

static_assert(std::is_same_v<serve::HandleResultOf<&TypedTranslator::translate>,
                             serve::DeploymentResponse<std::string>>);
static_assert(std::is_same_v<serve::HandleResultOf<&TypedTranslator::length>,
                             serve::DeploymentResponse<int>>);
static_assert(std::is_same_v<serve::HandleResultOf<&TypedTranslator::shout>,
                             serve::DeploymentResponse<std::string>>);
static_assert(std::is_same_v<serve::HandleResultOf<&TypedTranslator::count>,
                             serve::ResponseStream<int>>);
static_assert(std::is_same_v<serve::HandleResultOf<&TypedTranslator::touch>,
                             serve::DeploymentResponse<void>>);
static_assert(std::is_same_v<serve::HandleResultOf<&typed_ns::Box<int>::get>,
                             serve::DeploymentResponse<int>>);
// The handle's call<M> returns exactly that type.
static_assert(std::is_same_v<decltype(std::declval<serve::Handle<TypedTranslator>&>()
                                          .call<&TypedTranslator::count>(3)),
                             serve::ResponseStream<int>>);
static_assert(std::is_same_v<decltype(std::declval<serve::Handle<TypedTranslator>&>().remote(3)),
                             serve::DeploymentResponse<int>>);
// Bound deployments arrive as DeploymentHandle; a constructor may take Handle<T> instead.
static_assert(std::is_convertible_v<serve::DeploymentHandle, serve::Handle<TypedTranslator>>);

namespace {

// Runs every handle call of this process on one TypedTranslator, as its replica would: looks
// the method up by the name the handle sent and encodes what it returns.
class InProcessRuntime final : public serve::sdk::HandleRuntime {
 public:
  explicit InProcessRuntime(std::unique_ptr<serve::detail::Instance> instance)
      : instance_(std::move(instance)) {
    serve::sdk::SetHandleRuntime(this);
  }
  ~InProcessRuntime() override { serve::sdk::SetHandleRuntime(nullptr); }

  void Call(const serve::detail::CallTarget& target, std::string encoded_args,
            std::shared_ptr<serve::detail::ResponseState> state) override {
    methods.push_back(target.method);
    serve::detail::CallResult result;
    try {
      serve::detail::CallOutput out = Run(target, encoded_args);
      if (out.pending) out = std::move(out.pending->task).get();
      result.body = serve::detail::EncodeMsgpack(out.value);
    } catch (const std::exception& e) {
      result.code = serve::detail::CallResult::Code::kError;
      result.error_type = "Error";
      result.error_message = e.what();
    }
    state->Complete(std::move(result));
  }
  void CallStream(const serve::detail::CallTarget& target, std::string encoded_args,
                  std::shared_ptr<serve::detail::StreamState> stream) override {
    methods.push_back(target.method);
    serve::detail::CallOutput out = Run(target, encoded_args);
    while (std::optional<serve::Json> item = out.stream()) {
      stream->Push(serve::detail::EncodeMsgpack(*item));
    }
    stream->Finish();
  }

  std::vector<std::string> methods;  ///< names the handles sent, in order

 private:
  serve::detail::CallOutput Run(const serve::detail::CallTarget& target,
                                const std::string& encoded_args) {
    serve::Json args = serve::detail::DecodeMsgpack(encoded_args);
    serve::detail::CallInput in;
    in.args = &args;
    return instance_->Call(target.method, in);
  }
  std::unique_ptr<serve::detail::Instance> instance_;
};

}  // namespace

TEST(TypedHandleTest, ServeMethodRegistersTheMemberName) {
  auto instance = serve::testing::MakeInstance(
      serve::deployment<TypedTranslator>().bind(std::string("hi")));
  serve::Json args = serve::Json::array({"Ann"});
  serve::detail::CallInput in;
  in.args = &args;
  EXPECT_EQ(instance->Call("translate", in).value, "hi Ann");
  EXPECT_EQ(instance->Call("length", in).value, 3);
  serve::Json none = serve::Json::array();
  in.args = &none;
  EXPECT_EQ(instance->Call("touched", in).value, 0);
}

TEST(TypedHandleTest, CallsSendTheRegisteredNameAndDecodeTheDeducedType) {
  InProcessRuntime runtime(serve::testing::MakeInstance(
      serve::deployment<TypedTranslator>().bind(std::string("hola"))));
  serve::Handle<TypedTranslator> h = serve::DeploymentHandle("TypedTranslator");

  std::string translated = h.call<&TypedTranslator::translate>("Ann").result(1s);
  EXPECT_EQ(translated, "hola Ann");
  int length = h.call<&TypedTranslator::length>(std::string("four")).result(1.0);
  EXPECT_EQ(length, 4);
  EXPECT_EQ(h.call<&TypedTranslator::shout>("hey").result(1s), "HEY!");  // a Task method
  EXPECT_EQ(h.remote(21).result(1s), 42);                                 // operator()
  h.call<&TypedTranslator::touch>().result(1s);                            // void
  EXPECT_EQ(h.call<&TypedTranslator::touched>().result(1s), 1);

  serve::ResponseStream<int> items = h.call<&TypedTranslator::count>(3);
  std::vector<int> got;
  while (std::optional<int> i = items.next(1s)) got.push_back(*i);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2}));

  EXPECT_EQ(runtime.methods,
            (std::vector<std::string>{"translate", "length", "shout", "__call__", "touch",
                                      "touched", "count"}));
}

TEST(TypedHandleTest, ChainsATypedResponseAsAnArgument) {
  InProcessRuntime runtime(serve::testing::MakeInstance(
      serve::deployment<TypedTranslator>().bind(std::string("hola"))));
  serve::Handle<TypedTranslator> h = serve::DeploymentHandle("TypedTranslator");
  serve::DeploymentResponse<std::string> text = h.call<&TypedTranslator::translate>("Bo");
  EXPECT_EQ(h.call<&TypedTranslator::length>(text).result(1s), 7);  // "hola Bo"
}

TEST(TypedHandleTest, KeepsTheUntypedHandleAndItsOptions) {
  serve::Handle<TypedTranslator> h = serve::DeploymentHandle("Translator", "app");
  EXPECT_TRUE(h.valid());
  EXPECT_EQ(h.deployment_name(), "Translator");
  EXPECT_EQ(h.app_name(), "app");
  serve::Handle<TypedTranslator> shielded = h.options({.shield = true});
  EXPECT_EQ(shielded.untyped().deployment_name(), "Translator");
  EXPECT_FALSE(serve::Handle<TypedTranslator>().valid());
  serve::Json j = h;
  EXPECT_EQ(j.get<serve::Handle<TypedTranslator>>().deployment_name(), "Translator");
}

TEST(TypedHandleTest, DurationsAcceptChronoAndSeconds) {
  serve::DeploymentOptions o{.num_replicas = 2,
                             .health_check_period_s = 500ms,
                             .graceful_shutdown_timeout_s = 3.5};
  serve::Json j = o;
  EXPECT_EQ(j.at("health_check_period_s"), 0.5);
  EXPECT_EQ(j.at("graceful_shutdown_timeout_s"), 3.5);
  serve::DeploymentOptions back = j.get<serve::DeploymentOptions>();
  EXPECT_EQ(*back.health_check_period_s, 500ms);
  EXPECT_EQ(back.graceful_shutdown_timeout_s->seconds(), 3.5);
}

TEST(TypedHandleTest, AutoscalingConfigInOptionsMapsToTheYamlFields) {
  auto app = serve::deployment<TypedTranslator>(
                 {.autoscaling_config = serve::AutoscalingConfig{.min_replicas = 0,
                                                                 .max_replicas = 4,
                                                                 .target_ongoing_requests = 2,
                                                                 .upscale_delay_s = 2s,
                                                                 .downscale_delay_s = 60.0}})
                 .bind(std::string("x"));
  serve::Json options = app.graph_json().at("deployments").at(0).at("options");
  EXPECT_EQ(options.at("autoscaling_config"),
            (serve::Json{{"min_replicas", 0},
                         {"max_replicas", 4},
                         {"target_ongoing_requests", 2.0},
                         {"upscale_delay_s", 2.0},
                         {"downscale_delay_s", 60.0}}));
  EXPECT_FALSE(options.contains("num_replicas"));
}

// Custom autoscaling policies registered by an application library.
#include <serve/autoscaling.h>
#include <serve/serve.h>

#include <stdexcept>

class Scaled {
 public:
  std::string operator()(const serve::HttpRequest&) { return "ok"; }
};
SERVE_DEPLOYMENT(Scaled);

// Always three replicas; counts its calls in its state.
serve::AutoscalingDecision three_replicas(const serve::AutoscalingContext& ctx) {
  return {3, {{"calls", ctx.policy_state.value("calls", 0) + 1}}};
}
SERVE_AUTOSCALING_POLICY(three_replicas);

serve::AutoscalingDecision broken_policy(const serve::AutoscalingContext&) {
  throw std::runtime_error("the policy cannot decide");
}
SERVE_AUTOSCALING_POLICY(broken_policy);

serve::Application policy_builder(const serve::Args& args) {
  serve::AutoscalingConfig as;
  as.min_replicas = 1;
  as.max_replicas = 5;
  as.upscale_delay_s = 0;
  as.metrics_interval_s = 0.5;
  as.policy = args.get("policy", "three_replicas");
  return serve::deployment<Scaled>().autoscaling_config(as).bind();
}
SERVE_APP_BUILDER(policy_builder);

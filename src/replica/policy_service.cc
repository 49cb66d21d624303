#include "replica/policy_service.h"

#include <nlohmann/json.hpp>

#include "replica/loader.h"
#include "sdk/policy_registry.h"

namespace serve::replica {

grpc::Status PolicyService::Decide(grpc::ServerContext*, const v1::PolicyRequest* request,
                                   v1::PolicyReply* reply) {
  try {
    AutoscalingContext context = Json::parse(request->context_json());
    AutoscalingDecision decision = sdk::RunAutoscalingPolicy(request->policy(), context);
    reply->set_ok(true);
    reply->set_num_replicas(decision.num_replicas);
    reply->set_policy_state_json(decision.policy_state.dump());
  } catch (...) {
    reply->set_ok(false);
    reply->set_error(CurrentExceptionText());
  }
  return grpc::Status::OK;
}

}  // namespace serve::replica

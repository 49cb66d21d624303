#pragma once

#include "serve/v1/replica.grpc.pb.h"

namespace serve::replica {

/// Runs the application's registered autoscaling policies for the controller (gRPC thread).
class PolicyService final : public v1::AutoscalingPolicy::Service {
 public:
  grpc::Status Decide(grpc::ServerContext*, const v1::PolicyRequest* request,
                      v1::PolicyReply* reply) override;
};

}  // namespace serve::replica

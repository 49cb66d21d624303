#pragma once

#include <string>

#include "controller/controller.h"

namespace serve::controller {

/// What every manager may read about this controller. Owned by the control loop; `address`
/// and `log_file` are set by the composition root before the loop starts.
struct ControllerContext {
  ControllerOptions options;
  std::string address;   ///< this controller's gRPC address (given to the processes it starts)
  std::string log_file;  ///< shown in the instance details
};

}  // namespace serve::controller

#pragma once

#include <source_location>
#include <string>
#include <vector>

#include <serve/version.h>

namespace serve {

/// Identity of the replica running the current code (`serve.get_replica_context()`).
struct ReplicaContext {
  std::string app_name;
  std::string deployment;
  std::string replica_id;   ///< Unique id of this replica within its deployment.
  std::string replica_tag;  ///< Same as replica_id (Ray Serve's older name).
  std::string node_id = {};      ///< The node the replica runs on ("" outside a cluster).
  std::vector<int> gpu_ids = {};  ///< GPU devices assigned to it (its CUDA_VISIBLE_DEVICES).
};

/// Returns the context of the replica this code runs in. Throws std::logic_error outside a
/// replica (e.g. in an application builder).
SERVE_EXPORT const ReplicaContext& get_replica_context();

/// True once the request being served on this thread was cancelled (the HTTP client
/// disconnected or the caller cancelled). Synchronous code runs to completion unless it checks;
/// streaming handlers stop at the next co_yield. False outside a request.
SERVE_EXPORT bool is_request_cancelled();

/// Logger for user code. Lines go to the replica's log (and the `serve run` console) in the
/// deployment's logging_config encoding and level, carrying the deployment, replica id and
/// the request id, route and application of the request being served, plus the caller's
/// file and line (JSON `filename` / `lineno`).
class SERVE_EXPORT Logger {
 public:
  void debug(const std::string& message,
             std::source_location where = std::source_location::current()) const;
  void info(const std::string& message,
            std::source_location where = std::source_location::current()) const;
  void warning(const std::string& message,
               std::source_location where = std::source_location::current()) const;
  void error(const std::string& message,
             std::source_location where = std::source_location::current()) const;
};
SERVE_EXPORT const Logger& logger();

}  // namespace serve

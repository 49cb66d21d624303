#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace serve::cli {

struct RestResponse {
  long status = 0;
  std::string body;
};

/// One HTTP request to the REST API (libcurl), with this process's cluster token
/// (`Authorization: Bearer`) when it has one. Transport failures are kUnavailable naming the
/// address; HTTP error statuses are returned as responses.
absl::StatusOr<RestResponse> RestCall(const std::string& method, const std::string& url,
                                      const std::string& body = "", double timeout_s = 30);

}  // namespace serve::cli

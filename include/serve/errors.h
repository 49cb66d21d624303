#pragma once

#include <stdexcept>
#include <string>

#include <serve/version.h>

namespace serve {

/// Base of the errors serve raises to user code.
class SERVE_EXPORT ServeException : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A downstream deployment raised: carries the remote exception's type and message.
class SERVE_EXPORT DeploymentError : public ServeException {
 public:
  DeploymentError(std::string type, std::string message)
      : ServeException(type + ": " + message), type_(std::move(type)),
        message_(std::move(message)) {}
  const std::string& type() const { return type_; }
  const std::string& remote_message() const { return message_; }

 private:
  std::string type_;
  std::string message_;
};

/// The caller's max_queued_requests was reached (Ray's BackPressureError).
class SERVE_EXPORT BackPressureError : public ServeException {
 public:
  using ServeException::ServeException;
};

/// The deployment cannot take requests (failed or deleted).
class SERVE_EXPORT DeploymentUnavailableError : public ServeException {
 public:
  using ServeException::ServeException;
};

/// The request was cancelled.
class SERVE_EXPORT RequestCancelledError : public ServeException {
 public:
  using ServeException::ServeException;
};

/// `.result(timeout)` expired.
class SERVE_EXPORT TimeoutError : public ServeException {
 public:
  using ServeException::ServeException;
};

}  // namespace serve

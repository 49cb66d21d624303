#pragma once

#include <string>

namespace serve {

/// Sets this process's default spdlog logger: lines to `log_file` (created with its directory)
/// and to stderr, in Ray Serve's text format "LEVEL yyyy-mm-dd hh:mm:ss,ms <message>".
/// `level` is a Ray level name (DEBUG, INFO, WARNING, ERROR, CRITICAL).
void InitProcessLogging(const std::string& log_file, const std::string& level = "INFO",
                        bool to_stderr = true);

/// Flushes and drops the loggers (call before exit).
void ShutdownLogging();

}  // namespace serve

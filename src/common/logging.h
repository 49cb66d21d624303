#pragma once

// Process logging of every serve process (controller, proxy, replica, agent, build): one
// spdlog default logger ("ray.serve") writing Ray Serve's TEXT or JSON lines (log_format.h) to
// a rotating log file and, buffered, to stderr.

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/common.h>

#include "common/log_format.h"

namespace serve {

/// The default encoding: JSON when $RAY_SERVE_LOG_ENCODING is JSON (or the deprecated
/// $RAY_SERVE_ENABLE_JSON_LOGGING is 1), else TEXT.
LogEncoding DefaultLogEncoding();

/// The logging_config fields a process applies to its own log.
struct LogSettings {
  std::string level = "INFO";  ///< a Ray level name (NOTSET, DEBUG, INFO, WARNING, ERROR, ...)
  LogEncoding encoding = DefaultLogEncoding();
  std::vector<std::string> extra_attrs;  ///< additional_log_standard_attrs
};

/// Reads a (validated) logging_config; missing or malformed fields keep their defaults.
LogSettings LogSettingsFromJson(const nlohmann::json& logging_config);

/// The directory of serve's log files: `logs_dir` of a logging_config when set, else
/// `<session_dir>/logs/serve`.
std::string ServeLogsDir(const std::string& session_dir, const nlohmann::json& logging_config);

/// Ray's log rotation: RAY_ROTATION_MAX_BYTES (default 512 MiB) and RAY_ROTATION_BACKUP_COUNT
/// (default 5). Either <= 0 turns rotation off (the file grows). Rotated files are named
/// `<stem>.1.log` (newest) ... `<stem>.<backup_count>.log`.
struct RotationLimits {
  std::int64_t max_bytes = 512LL * 1024 * 1024;
  int backup_count = 5;
};
RotationLimits RotationFromEnv();

/// Ray level name -> spdlog level (WARN = WARNING, FATAL = CRITICAL, NOTSET = everything);
/// unknown names give INFO.
spdlog::level::level_enum ParseLogLevel(const std::string& level);

/// Sets this process's default logger: lines to `log_file` (created with its directory;
/// rotated per RotationFromEnv()) and, unless `to_stderr` is false or RAY_SERVE_LOG_TO_STDERR
/// is 0, to stderr. An empty `log_file` logs to stderr only.
void InitProcessLogging(const LogComponent& component, const std::string& log_file,
                        const LogSettings& settings = {}, bool to_stderr = true);

/// Applies `settings` to the running logger (level, encoding, attributes: the next line uses
/// them). A non-empty `log_file` other than the current one moves the file log there; when it
/// cannot be opened the old file stays and the error is logged. Thread-safe.
void ReconfigureProcessLogging(const LogSettings& settings, const std::string& log_file = "");

/// Whether the HTTP servers of this process write access-log lines (the proxy follows the
/// top-level logging_config's enable_access_log). Default true.
bool AccessLogEnabled();
void SetAccessLogEnabled(bool on);

/// The file this process logs to ("" when none).
std::string CurrentLogFile();

/// Flushes and drops the loggers (call before exit).
void ShutdownLogging();

}  // namespace serve

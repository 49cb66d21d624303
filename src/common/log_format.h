#pragma once

// Ray Serve's log line formats (TEXT and JSON) as an spdlog formatter, and the fields each line
// carries: the writing component (process-wide) and the request being served (per thread).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/formatter.h>

namespace serve {

enum class LogEncoding { kText, kJson };

/// Who writes this process's lines. Replicas: name "<app>_<deployment>", id the replica id
/// (JSON: `deployment`, `replica`, `component_name: "replica"`); other processes: name
/// controller / proxy / agent / build and an id (JSON: `component_name`, `component_id`).
struct LogComponent {
  std::string name;
  std::string id;
  bool replica = false;
};

/// The request a line was logged for. Empty fields are left out.
struct RequestLogFields {
  std::string_view request_id;
  std::string_view route;
  std::string_view application;
};

/// Lines logged on this thread while the scope lives carry `fields` (the strings they view
/// must outlive the scope). Scopes nest.
class ScopedRequestLog {
 public:
  explicit ScopedRequestLog(RequestLogFields fields);
  ~ScopedRequestLog();
  ScopedRequestLog(const ScopedRequestLog&) = delete;
  ScopedRequestLog& operator=(const ScopedRequestLog&) = delete;

 private:
  RequestLogFields fields_;
  const RequestLogFields* previous_;
};

/// Where lines logged outside any ScopedRequestLog find their request (the replica installs
/// one that reads the SDK's per-request context). Install once, before other threads log.
using RequestLogFieldsSource = RequestLogFields (*)();
void SetRequestLogFieldsSource(RequestLogFieldsSource source);

/// The formatter of every serve process's log.
///
/// TEXT: `LEVEL yyyy-mm-dd hh:mm:ss,mmm <name> <id> [<request_id> [<route>]] [<attrs>] -- msg`
/// (the route only on replica lines; attrs are the values of `extra_attrs`, in order).
/// JSON, one object per line: asctime, levelname, message, filename and lineno (when the
/// source location is known), process, the `extra_attrs`, request_id / route / application
/// (when set), the component fields and timestamp_ns.
///
/// `extra_attrs` are Python LogRecord attribute names (additional_log_standard_attrs). Mapped:
/// name (logger name), levelname, levelno, asctime, message, msg, created, msecs,
/// relativeCreated, filename, pathname, module, lineno, funcName (from the source location of
/// user log calls), process, processName (executable name), thread (OS thread id), threadName.
/// With no C++ equivalent, rendered null (TEXT "None"): args, exc_info, exc_text, stack_info,
/// taskName.
class ServeLogFormatter final : public spdlog::formatter {
 public:
  ServeLogFormatter(LogComponent component, LogEncoding encoding,
                    std::vector<std::string> extra_attrs);
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;

 private:
  void FormatText(const spdlog::details::log_msg& msg, const RequestLogFields& req,
                  spdlog::memory_buf_t& dest);
  void FormatJson(const spdlog::details::log_msg& msg, const RequestLogFields& req,
                  spdlog::memory_buf_t& dest);

  LogComponent component_;
  LogEncoding encoding_;
  std::vector<std::string> extra_attrs_;
  std::string text_prefix_;  // " <name> <id>"
  int pid_;
};

/// Ray's level names (DEBUG, INFO, WARNING, ERROR, CRITICAL) for spdlog levels.
std::string_view RayLevelName(int spdlog_level);

}  // namespace serve

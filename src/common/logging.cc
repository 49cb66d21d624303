#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/spdlog.h>

#include "common/util.h"

namespace serve {
namespace {

// stderr, buffered: lines are written when the logger flushes (warnings at once, the rest
// within a second), so a busy replica or proxy does not pay a write per access-log line.
class BufferedStderrSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    buffer_.append(line.data(), line.size());
    if (buffer_.size() >= 64 * 1024) flush_();
  }
  void flush_() override {
    size_t off = 0;
    while (off < buffer_.size()) {
      ssize_t n = ::write(STDERR_FILENO, buffer_.data() + off, buffer_.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    buffer_.clear();
  }

 private:
  std::string buffer_;
};

// The process logger's state, for ReconfigureProcessLogging.
struct ProcessLog {
  std::mutex mu;
  LogComponent component;
  std::shared_ptr<spdlog::sinks::dist_sink_mt> file;  // holds the current file sink
  spdlog::sink_ptr console;                           // stderr, or null
  std::string log_file;
};
ProcessLog& State() {
  static ProcessLog* state = new ProcessLog();  // outlives every logging thread
  return *state;
}

std::int64_t EnvInt(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long long n = std::strtoll(v, &end, 10);
  return (end != nullptr && *end == '\0') ? n : fallback;
}

// The file sink for `path` (its directory created); throws spdlog_ex when it cannot be opened.
spdlog::sink_ptr MakeFileSink(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  RotationLimits limits = RotationFromEnv();
  if (limits.max_bytes <= 0 || limits.backup_count <= 0) {
    return std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  }
  return std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
      path, static_cast<size_t>(limits.max_bytes), static_cast<size_t>(limits.backup_count));
}

std::unique_ptr<spdlog::formatter> MakeFormatter(const LogComponent& component,
                                                 const LogSettings& settings) {
  return std::make_unique<ServeLogFormatter>(component, settings.encoding, settings.extra_attrs);
}

// The file gets the configured encoding; stderr is always TEXT (as in Ray, for people reading
// `serve run`).
void SetFormatters(ProcessLog& state, const LogSettings& settings) {
  state.file->set_formatter(MakeFormatter(state.component, settings));
  if (state.console) {
    LogSettings text = settings;
    text.encoding = LogEncoding::kText;
    state.console->set_formatter(MakeFormatter(state.component, text));
  }
}

}  // namespace

LogEncoding DefaultLogEncoding() {
  const char* env = std::getenv("RAY_SERVE_LOG_ENCODING");
  const char* legacy = std::getenv("RAY_SERVE_ENABLE_JSON_LOGGING");
  bool json = (env != nullptr && std::string(env) == "JSON") ||
              (legacy != nullptr && std::string(legacy) == "1");
  return json ? LogEncoding::kJson : LogEncoding::kText;
}

LogSettings LogSettingsFromJson(const nlohmann::json& lc) {
  LogSettings s;
  if (!lc.is_object()) return s;
  if (auto it = lc.find("log_level"); it != lc.end() && it->is_string()) s.level = *it;
  if (auto it = lc.find("encoding"); it != lc.end() && it->is_string()) {
    s.encoding = *it == "JSON" ? LogEncoding::kJson : LogEncoding::kText;
  }
  if (auto it = lc.find("additional_log_standard_attrs"); it != lc.end() && it->is_array()) {
    for (const auto& a : *it) {
      if (a.is_string()) s.extra_attrs.push_back(a);
    }
  }
  return s;
}

std::string ServeLogsDir(const std::string& session_dir, const nlohmann::json& lc) {
  if (lc.is_object()) {
    if (auto it = lc.find("logs_dir"); it != lc.end() && it->is_string() && !it->empty()) {
      return *it;
    }
  }
  return session_dir + "/logs/serve";
}

RotationLimits RotationFromEnv() {
  RotationLimits limits;
  limits.max_bytes = EnvInt("RAY_ROTATION_MAX_BYTES", limits.max_bytes);
  limits.backup_count = static_cast<int>(EnvInt("RAY_ROTATION_BACKUP_COUNT", limits.backup_count));
  return limits;
}

spdlog::level::level_enum ParseLogLevel(const std::string& level) {
  if (level == "NOTSET") return spdlog::level::trace;
  if (level == "DEBUG") return spdlog::level::debug;
  if (level == "WARNING" || level == "WARN") return spdlog::level::warn;
  if (level == "ERROR") return spdlog::level::err;
  if (level == "CRITICAL" || level == "FATAL") return spdlog::level::critical;
  return spdlog::level::info;
}

void InitProcessLogging(const LogComponent& component, const std::string& log_file,
                        const LogSettings& settings, bool to_stderr) {
  ProcessLog& state = State();
  std::lock_guard lock(state.mu);
  state.component = component;
  state.log_file = log_file;
  state.file = std::make_shared<spdlog::sinks::dist_sink_mt>();
  if (!log_file.empty()) state.file->add_sink(MakeFileSink(log_file));
  std::vector<spdlog::sink_ptr> sinks = {state.file};
  state.console.reset();
  // RAY_SERVE_LOG_TO_STDERR=0 keeps logs in the files only (no per-line write to stderr).
  if (to_stderr && EnvDouble("RAY_SERVE_LOG_TO_STDERR", 1) != 0) {
    state.console = std::make_shared<BufferedStderrSink>();
    sinks.push_back(state.console);
  }
  auto logger = std::make_shared<spdlog::logger>("ray.serve", sinks.begin(), sinks.end());
  SetFormatters(state, settings);
  logger->set_level(ParseLogLevel(settings.level));
  // Files are flushed at least every second and at once for warnings: a write syscall per
  // access-log line would cost more than the request itself.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

void ReconfigureProcessLogging(const LogSettings& settings, const std::string& log_file) {
  ProcessLog& state = State();
  std::lock_guard lock(state.mu);
  auto logger = spdlog::default_logger();
  if (!logger || !state.file) return;
  if (!log_file.empty() && log_file != state.log_file) {
    try {
      spdlog::sink_ptr sink = MakeFileSink(log_file);
      sink->set_formatter(MakeFormatter(state.component, settings));
      state.file->set_sinks({sink});
      spdlog::info("Logging to {} (was {}).", log_file, state.log_file);
      state.log_file = log_file;
    } catch (const spdlog::spdlog_ex& e) {
      spdlog::error("Cannot log to {}: {}; keeping {}.", log_file, e.what(), state.log_file);
    }
  }
  SetFormatters(state, settings);
  logger->set_level(ParseLogLevel(settings.level));
}

namespace {
std::atomic<bool> g_access_log{true};
}  // namespace
bool AccessLogEnabled() { return g_access_log.load(std::memory_order_relaxed); }
void SetAccessLogEnabled(bool on) { g_access_log.store(on); }

std::string CurrentLogFile() {
  ProcessLog& state = State();
  std::lock_guard lock(state.mu);
  return state.log_file;
}

void ShutdownLogging() {
  if (auto l = spdlog::default_logger()) l->flush();
  spdlog::shutdown();
  ProcessLog& state = State();
  std::lock_guard lock(state.mu);
  state.file.reset();
  state.console.reset();
}

}  // namespace serve

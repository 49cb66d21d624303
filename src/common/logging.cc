#include "common/logging.h"

#include <unistd.h>

#include <chrono>
#include <mutex>
#include <string>

#include <filesystem>
#include <memory>
#include <vector>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "common/util.h"

namespace serve {
namespace {

// %* -> Ray's level names (INFO, WARNING, ...).
class RayLevelFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr std::string_view kNames[] = {"TRACE", "DEBUG",    "INFO", "WARNING",
                                                  "ERROR", "CRITICAL", "OFF"};
    auto name = kNames[static_cast<int>(msg.level)];
    dest.append(name.data(), name.data() + name.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<RayLevelFlag>();
  }
};

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

spdlog::level::level_enum ParseLevel(const std::string& level) {
  if (level == "DEBUG") return spdlog::level::debug;
  if (level == "WARNING" || level == "WARN") return spdlog::level::warn;
  if (level == "ERROR") return spdlog::level::err;
  if (level == "CRITICAL") return spdlog::level::critical;
  return spdlog::level::info;
}

}  // namespace

void InitProcessLogging(const std::string& log_file, const std::string& level, bool to_stderr) {
  std::vector<spdlog::sink_ptr> sinks;
  if (!log_file.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(log_file).parent_path(), ec);
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file));
  }
  // RAY_SERVE_LOG_TO_STDERR=0 keeps logs in the files only (no per-line write to stderr).
  if (to_stderr && EnvDouble("RAY_SERVE_LOG_TO_STDERR", 1) != 0) {
    sinks.push_back(std::make_shared<BufferedStderrSink>());
  }
  auto logger = std::make_shared<spdlog::logger>("serve", sinks.begin(), sinks.end());
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<RayLevelFlag>('*').set_pattern("%* %Y-%m-%d %H:%M:%S,%e %v");
  logger->set_formatter(std::move(formatter));
  logger->set_level(ParseLevel(level));
  // Files are flushed at least every second and at once for warnings: a write syscall per
  // access-log line would cost more than the request itself.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  spdlog::flush_every(std::chrono::seconds(1));
}

void ShutdownLogging() {
  if (auto l = spdlog::default_logger()) l->flush();
  spdlog::shutdown();
}

}  // namespace serve

#include "common/log_format.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include <spdlog/details/log_msg.h>
#include <spdlog/fmt/fmt.h>

namespace serve {
namespace {

thread_local const RequestLogFields* tls_fields = nullptr;
std::atomic<RequestLogFieldsSource> g_source{nullptr};
const auto kProcessStart = std::chrono::system_clock::now();

void Append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

void AppendInt(spdlog::memory_buf_t& dest, long long n) { Append(dest, fmt::format_int(n).c_str()); }

// JSON string literal, quotes included. Runs of characters that need no escape are copied
// at once.
void AppendJsonString(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.push_back('"');
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    Append(dest, s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"': Append(dest, "\\\""); break;
      case '\\': Append(dest, "\\\\"); break;
      case '\n': Append(dest, "\\n"); break;
      case '\r': Append(dest, "\\r"); break;
      case '\t': Append(dest, "\\t"); break;
      default: fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<unsigned>(c));
    }
  }
  Append(dest, s.substr(run));
  dest.push_back('"');
}

void AppendJsonField(spdlog::memory_buf_t& dest, std::string_view key, std::string_view value) {
  Append(dest, ", ");
  AppendJsonString(dest, key);
  Append(dest, ": ");
  AppendJsonString(dest, value);
}

// "yyyy-mm-dd hh:mm:ss,mmm" in local time (Python's asctime); the seconds part is cached per
// thread, as most lines of a busy process fall in the same second.
void AppendAsctime(spdlog::memory_buf_t& dest, spdlog::log_clock::time_point t) {
  thread_local std::time_t cached_second = -1;
  thread_local char cached[32];
  auto since_epoch = t.time_since_epoch();
  std::time_t secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count();
  if (secs != cached_second) {
    std::tm tm{};
    localtime_r(&secs, &tm);
    std::strftime(cached, sizeof(cached), "%Y-%m-%d %H:%M:%S", &tm);
    cached_second = secs;
  }
  int ms = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000);
  Append(dest, cached);
  char millis[4] = {',', static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                    static_cast<char>('0' + ms % 10)};
  dest.append(millis, millis + 4);
}

std::string_view Basename(const char* path) {
  std::string_view p = path ? path : "";
  auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

// The value of one LogRecord attribute: a string, a number, or null (nothing set).
struct AttrValue {
  enum Kind { kNull, kString, kNumber } kind = kNull;
  std::string text;
};

AttrValue Attr(const std::string& name, const spdlog::details::log_msg& msg) {
  auto str = [](std::string_view s) { return AttrValue{AttrValue::kString, std::string(s)}; };
  auto num = [](std::string s) { return AttrValue{AttrValue::kNumber, std::move(s)}; };
  double created =
      std::chrono::duration<double>(msg.time.time_since_epoch()).count();
  bool has_source = !msg.source.empty();
  if (name == "name") return str({msg.logger_name.data(), msg.logger_name.size()});
  if (name == "levelname") return str(RayLevelName(msg.level));
  if (name == "levelno") {
    static constexpr int kNo[] = {5, 10, 20, 30, 40, 50, 0};
    return num(std::to_string(kNo[static_cast<int>(msg.level)]));
  }
  if (name == "asctime") {
    spdlog::memory_buf_t b;
    AppendAsctime(b, msg.time);
    return str({b.data(), b.size()});
  }
  if (name == "message" || name == "msg") return str({msg.payload.data(), msg.payload.size()});
  if (name == "created") return num(fmt::format("{:.6f}", created));
  if (name == "msecs") {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(msg.time.time_since_epoch());
    return num(fmt::format("{:.3f}", static_cast<double>(us.count() % 1000000) / 1000.0));
  }
  if (name == "relativeCreated") {
    return num(fmt::format(
        "{:.3f}", std::chrono::duration<double, std::milli>(msg.time - kProcessStart).count()));
  }
  if (name == "process") return num(std::to_string(::getpid()));
  if (name == "processName") return str(program_invocation_short_name);
  if (name == "thread") return num(std::to_string(msg.thread_id));
  if (name == "threadName") {
    char buf[32] = {0};
    pthread_getname_np(pthread_self(), buf, sizeof(buf));
    return str(buf);
  }
  if (!has_source) return {};
  if (name == "filename") return str(Basename(msg.source.filename));
  if (name == "pathname") return str(msg.source.filename);
  if (name == "module") return str(std::filesystem::path(msg.source.filename).stem().string());
  if (name == "lineno") return num(std::to_string(msg.source.line));
  if (name == "funcName") return str(msg.source.funcname ? msg.source.funcname : "");
  return {};  // args, exc_info, exc_text, stack_info, taskName
}

}  // namespace

std::string_view RayLevelName(int spdlog_level) {
  static constexpr std::string_view kNames[] = {"TRACE", "DEBUG",    "INFO", "WARNING",
                                                "ERROR", "CRITICAL", "OFF"};
  if (spdlog_level < 0 || spdlog_level > 6) return "NOTSET";
  return kNames[spdlog_level];
}

ScopedRequestLog::ScopedRequestLog(RequestLogFields fields)
    : fields_(fields), previous_(tls_fields) {
  tls_fields = &fields_;
}
ScopedRequestLog::~ScopedRequestLog() { tls_fields = previous_; }

void SetRequestLogFieldsSource(RequestLogFieldsSource source) { g_source.store(source); }

ServeLogFormatter::ServeLogFormatter(LogComponent component, LogEncoding encoding,
                                     std::vector<std::string> extra_attrs)
    : component_(std::move(component)), encoding_(encoding),
      extra_attrs_(std::move(extra_attrs)),
      text_prefix_(" " + component_.name + " " + component_.id), pid_(::getpid()) {}

std::unique_ptr<spdlog::formatter> ServeLogFormatter::clone() const {
  return std::make_unique<ServeLogFormatter>(component_, encoding_, extra_attrs_);
}

void ServeLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  RequestLogFields req;
  if (tls_fields != nullptr) {
    req = *tls_fields;
  } else if (RequestLogFieldsSource source = g_source.load(std::memory_order_relaxed)) {
    req = source();
  }
  if (encoding_ == LogEncoding::kJson) {
    FormatJson(msg, req, dest);
  } else {
    FormatText(msg, req, dest);
  }
  dest.push_back('\n');
}

void ServeLogFormatter::FormatText(const spdlog::details::log_msg& msg,
                                   const RequestLogFields& req, spdlog::memory_buf_t& dest) {
  Append(dest, RayLevelName(msg.level));
  dest.push_back(' ');
  AppendAsctime(dest, msg.time);
  Append(dest, text_prefix_);
  if (!req.request_id.empty()) {
    dest.push_back(' ');
    Append(dest, req.request_id);
    if (component_.replica && !req.route.empty()) {
      dest.push_back(' ');
      Append(dest, req.route);
    }
  }
  for (const std::string& name : extra_attrs_) {
    AttrValue v = Attr(name, msg);
    dest.push_back(' ');
    Append(dest, v.kind == AttrValue::kNull ? std::string_view("None") : v.text);
  }
  Append(dest, " -- ");
  Append(dest, {msg.payload.data(), msg.payload.size()});
}

void ServeLogFormatter::FormatJson(const spdlog::details::log_msg& msg,
                                   const RequestLogFields& req, spdlog::memory_buf_t& dest) {
  Append(dest, "{\"asctime\": \"");
  AppendAsctime(dest, msg.time);
  Append(dest, "\"");
  AppendJsonField(dest, "levelname", RayLevelName(msg.level));
  AppendJsonField(dest, "message", {msg.payload.data(), msg.payload.size()});
  if (!msg.source.empty()) {
    AppendJsonField(dest, "filename", Basename(msg.source.filename));
    Append(dest, ", \"lineno\": ");
    AppendInt(dest, msg.source.line);
  }
  Append(dest, ", \"process\": ");
  AppendInt(dest, pid_);
  for (const std::string& name : extra_attrs_) {
    // Keys emitted above keep their one value (as in Ray's record dict).
    if (name == "asctime" || name == "levelname" || name == "message" || name == "process" ||
        (!msg.source.empty() && (name == "filename" || name == "lineno"))) {
      continue;
    }
    AttrValue v = Attr(name, msg);
    Append(dest, ", ");
    AppendJsonString(dest, name);
    Append(dest, ": ");
    if (v.kind == AttrValue::kString) {
      AppendJsonString(dest, v.text);
    } else {
      Append(dest, v.kind == AttrValue::kNumber ? std::string_view(v.text) : "null");
    }
  }
  if (!req.request_id.empty()) AppendJsonField(dest, "request_id", req.request_id);
  if (!req.route.empty()) AppendJsonField(dest, "route", req.route);
  if (!req.application.empty()) AppendJsonField(dest, "application", req.application);
  if (component_.replica) {
    AppendJsonField(dest, "deployment", component_.name);
    AppendJsonField(dest, "replica", component_.id);
    AppendJsonField(dest, "component_name", "replica");
  } else {
    AppendJsonField(dest, "component_name", component_.name);
    AppendJsonField(dest, "component_id", component_.id);
  }
  Append(dest, ", \"timestamp_ns\": ");
  AppendInt(dest, std::chrono::duration_cast<std::chrono::nanoseconds>(
                      msg.time.time_since_epoch())
                      .count());
  dest.push_back('}');
}

}  // namespace serve

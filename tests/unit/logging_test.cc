// The process log: Ray Serve's TEXT and JSON line formats, request fields, standard attributes,
// rotation (RAY_ROTATION_*) and reconfiguration of the running logger.

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <spdlog/details/log_msg.h>
#include <spdlog/spdlog.h>

#include "common/log_format.h"
#include "common/logging.h"

namespace serve {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
namespace fs = std::filesystem;

std::string Format(const LogComponent& component, LogEncoding encoding,
                   std::vector<std::string> attrs, spdlog::level::level_enum level,
                   const std::string& message, spdlog::source_loc where = {}) {
  ServeLogFormatter f(component, encoding, std::move(attrs));
  spdlog::details::log_msg msg(where, "ray.serve", level, message);
  spdlog::memory_buf_t out;
  f.format(msg, out);
  return std::string(out.data(), out.size());
}

const LogComponent kReplica{"app1_Model", "abc123", true};
const LogComponent kProxy{"proxy", "10.0.0.1", false};

TEST(LogFormatTest, TextLineHasLevelTimeComponentAndMessage) {
  std::string line = Format(kProxy, LogEncoding::kText, {}, spdlog::level::warn, "hello");
  EXPECT_THAT(line, MatchesRegex("WARNING [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8},[0-9]{3} "
                                 "proxy 10\\.0\\.0\\.1 -- hello\n"));
}

TEST(LogFormatTest, TextReplicaLineCarriesRequestIdAndRoute) {
  RequestLogFields fields{"req-1", "/api", "app1"};
  ScopedRequestLog scope(fields);
  std::string line = Format(kReplica, LogEncoding::kText, {}, spdlog::level::info, "GET / 200");
  EXPECT_THAT(line, HasSubstr(" app1_Model abc123 req-1 /api -- GET / 200\n"));
  // Other components show the request id only (the route is in the message).
  EXPECT_THAT(Format(kProxy, LogEncoding::kText, {}, spdlog::level::info, "GET /api 200"),
              HasSubstr(" proxy 10.0.0.1 req-1 -- GET /api 200\n"));
}

TEST(LogFormatTest, JsonReplicaLineHasRayFields) {
  RequestLogFields fields{"req-\"2\"", "/r", "app1"};
  ScopedRequestLog scope(fields);
  std::string line = Format(kReplica, LogEncoding::kJson, {}, spdlog::level::err,
                            "bad\nthing", {"/src/model.cc", 42, "Run"});
  ASSERT_EQ(line.back(), '\n');
  json j = json::parse(line);
  EXPECT_EQ(j["levelname"], "ERROR");
  EXPECT_EQ(j["message"], "bad\nthing");
  EXPECT_EQ(j["request_id"], "req-\"2\"");
  EXPECT_EQ(j["route"], "/r");
  EXPECT_EQ(j["application"], "app1");
  EXPECT_EQ(j["deployment"], "app1_Model");
  EXPECT_EQ(j["replica"], "abc123");
  EXPECT_EQ(j["component_name"], "replica");
  EXPECT_EQ(j["filename"], "model.cc");
  EXPECT_EQ(j["lineno"], 42);
  EXPECT_EQ(j["process"], ::getpid());
  EXPECT_TRUE(j["timestamp_ns"].is_number_integer());
  EXPECT_THAT(j["asctime"].get<std::string>(),
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8},[0-9]{3}"));
}

TEST(LogFormatTest, JsonOtherComponentsAndNoRequest) {
  json j = json::parse(Format(kProxy, LogEncoding::kJson, {}, spdlog::level::info, "up"));
  EXPECT_EQ(j["component_name"], "proxy");
  EXPECT_EQ(j["component_id"], "10.0.0.1");
  EXPECT_FALSE(j.contains("request_id"));
  EXPECT_FALSE(j.contains("route"));
  EXPECT_FALSE(j.contains("deployment"));
  EXPECT_FALSE(j.contains("filename"));  // no source location
}

TEST(LogFormatTest, RequestFieldsComeFromTheInstalledSource) {
  static const std::string kId = "from-source";
  SetRequestLogFieldsSource([] { return RequestLogFields{kId, "/s", "a"}; });
  json j = json::parse(Format(kReplica, LogEncoding::kJson, {}, spdlog::level::info, "x"));
  EXPECT_EQ(j["request_id"], kId);
  {
    RequestLogFields fields{"scoped", "/", "a"};
    ScopedRequestLog scope(fields);  // a scope wins over the source
    EXPECT_EQ(json::parse(Format(kReplica, LogEncoding::kJson, {}, spdlog::level::info,
                                 "x"))["request_id"],
              "scoped");
  }
  SetRequestLogFieldsSource(nullptr);
  EXPECT_FALSE(json::parse(Format(kReplica, LogEncoding::kJson, {}, spdlog::level::info, "x"))
                   .contains("request_id"));
}

TEST(LogFormatTest, AdditionalStandardAttributes) {
  std::vector<std::string> attrs = {"name", "funcName", "levelno", "created", "lineno",
                                    "module", "process", "thread", "exc_info"};
  json j = json::parse(Format(kReplica, LogEncoding::kJson, attrs, spdlog::level::warn, "m",
                              {"/x/user_model.cc", 7, "Handle"}));
  EXPECT_EQ(j["name"], "ray.serve");
  EXPECT_EQ(j["funcName"], "Handle");
  EXPECT_EQ(j["levelno"], 30);
  EXPECT_TRUE(j["created"].is_number_float());
  EXPECT_EQ(j["lineno"], 7);
  EXPECT_EQ(j["module"], "user_model");
  EXPECT_TRUE(j["thread"].is_number_integer());
  EXPECT_TRUE(j["exc_info"].is_null());  // no C++ equivalent
  // TEXT: the values, in order, before the message.
  std::string line = Format(kProxy, LogEncoding::kText, {"name", "funcName", "exc_info"},
                            spdlog::level::info, "m", {"/x/a.cc", 1, "F"});
  EXPECT_THAT(line, HasSubstr(" proxy 10.0.0.1 ray.serve F None -- m\n"));
}

// A temp dir removed at the end, and environment variables restored.
class ProcessLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("serve_logging_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override {
    ShutdownLogging();
    ::unsetenv("RAY_ROTATION_MAX_BYTES");
    ::unsetenv("RAY_ROTATION_BACKUP_COUNT");
    fs::remove_all(dir_);
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  fs::path dir_;
};

TEST_F(ProcessLogTest, RotatesBySizeKeepingBackupCount) {
  ::setenv("RAY_ROTATION_MAX_BYTES", "2000", 1);
  ::setenv("RAY_ROTATION_BACKUP_COUNT", "2", 1);
  std::string file = (dir_ / "proxy_1.log").string();
  InitProcessLogging(kProxy, file, {}, /*to_stderr=*/false);
  for (int i = 0; i < 200; ++i) spdlog::info("line {} with some padding to fill the file", i);
  spdlog::default_logger()->flush();
  EXPECT_EQ(Files(), (std::vector<std::string>{"proxy_1.1.log", "proxy_1.2.log", "proxy_1.log"}));
  for (const auto& name : Files()) EXPECT_LE(fs::file_size(dir_ / name), 2000u) << name;
  EXPECT_THAT(Read(dir_ / "proxy_1.log"), HasSubstr("line 199 "));
}

TEST_F(ProcessLogTest, NoRotationWhenLimitIsZero) {
  ::setenv("RAY_ROTATION_MAX_BYTES", "0", 1);
  std::string file = (dir_ / "c.log").string();
  InitProcessLogging(kProxy, file, {}, /*to_stderr=*/false);
  for (int i = 0; i < 200; ++i) spdlog::info("line {} with some padding to fill the file", i);
  spdlog::default_logger()->flush();
  EXPECT_EQ(Files(), (std::vector<std::string>{"c.log"}));
  EXPECT_GT(fs::file_size(dir_ / "c.log"), 8000u);
}

TEST(RotationTest, RayDefaults) {
  RotationLimits limits = RotationFromEnv();
  EXPECT_EQ(limits.max_bytes, 512LL * 1024 * 1024);
  EXPECT_EQ(limits.backup_count, 5);
}

TEST_F(ProcessLogTest, ReconfigureChangesLevelEncodingAndFile) {
  std::string first = (dir_ / "a" / "replica.log").string();
  LogSettings text;
  text.encoding = LogEncoding::kText;
  InitProcessLogging(kReplica, first, text, /*to_stderr=*/false);
  spdlog::debug("hidden at INFO");
  spdlog::info("text line");
  LogSettings json_debug;
  json_debug.level = "DEBUG";
  json_debug.encoding = LogEncoding::kJson;
  std::string second = (dir_ / "b" / "replica.log").string();
  ReconfigureProcessLogging(json_debug, second);
  EXPECT_EQ(CurrentLogFile(), second);
  spdlog::debug("json debug line");
  spdlog::default_logger()->flush();
  std::string a = Read(first);
  EXPECT_THAT(a, HasSubstr("INFO "));
  EXPECT_THAT(a, HasSubstr(" -- text line"));
  EXPECT_THAT(a, Not(HasSubstr("hidden")));
  std::string b = Read(second);
  std::string last = b.substr(b.rfind('{'));
  json j = json::parse(last);
  EXPECT_EQ(j["levelname"], "DEBUG");
  EXPECT_EQ(j["message"], "json debug line");
}

TEST(LogSettingsTest, FromJsonAndLogsDir) {
  LogSettings s = LogSettingsFromJson(json{{"encoding", "JSON"},
                                           {"log_level", "ERROR"},
                                           {"additional_log_standard_attrs", {"name"}}});
  EXPECT_EQ(s.encoding, LogEncoding::kJson);
  EXPECT_EQ(s.level, "ERROR");
  EXPECT_EQ(s.extra_attrs, std::vector<std::string>{"name"});
  EXPECT_EQ(ServeLogsDir("/s", json{{"logs_dir", "/custom"}}), "/custom");
  EXPECT_EQ(ServeLogsDir("/s", json{{"logs_dir", nullptr}}), "/s/logs/serve");
  EXPECT_EQ(ParseLogLevel("WARN"), spdlog::level::warn);
  EXPECT_EQ(ParseLogLevel("FATAL"), spdlog::level::critical);
  EXPECT_EQ(ParseLogLevel("NOTSET"), spdlog::level::trace);
}

}  // namespace
}  // namespace serve

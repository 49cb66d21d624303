// The dashboard's file and log routes on a temp web root and logs dir (no sockets).
#include "controller/dashboard.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace serve::controller {
namespace {

namespace fs = std::filesystem;

// Details with one replica whose log is `log`.
class OneReplicaApi final : public ControllerApi {
 public:
  explicit OneReplicaApi(std::string log) : log_(std::move(log)) {}
  nlohmann::json Details(const std::string&) override {
    nlohmann::json details;
    details["applications"]["app"]["deployments"]["D"]["replicas"] =
        nlohmann::json::array({{{"replica_id", "abc123"}, {"log_file_path", log_}}});
    return details;
  }
  absl::Status ApplyConfig(const config::ServeDeployConfig&) override { return absl::OkStatus(); }
  void DeleteAllApplications() override {}
  std::string SessionName() override { return "s"; }
  absl::Status DrainNode(const std::string&, double) override { return absl::OkStatus(); }
  std::string log_;
};

void Write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("dashboard_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    Write(root_ / "web/serve/index.html", "<html>page</html>");
    Write(root_ / "web/serve/app.js", "js");
    Write(root_ / "web/serve/notes.bin", "bin");
    Write(root_ / "secret.js", "classified");
    fs::create_symlink(root_ / "secret.js", root_ / "web/serve/link.js");
    Write(root_ / "session/logs/serve/replica.log", "one\ntwo\nthree\n");
    options_ = {(root_ / "web").string(), (root_ / "session/logs").string()};
  }
  void TearDown() override { fs::remove_all(root_); }

  std::optional<rpc::HttpServerResponse> Get(ControllerApi& api, const std::string& target,
                                             const std::string& method = "GET") {
    rpc::HttpServerRequest req;
    req.method = method;
    req.target = target;
    return HandleDashboard(options_, api, req);
  }

  fs::path root_;
  DashboardOptions options_;
};

TEST_F(DashboardTest, ServesPageAndFilesWithTheirTypes) {
  OneReplicaApi api("");
  for (const char* target : {"/", "/serve", "/serve/?x=1"}) {
    auto r = Get(api, target);
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "<html>page</html>");
    EXPECT_EQ(r->headers[0].second, "text/html; charset=utf-8");
  }
  auto js = Get(api, "/static/serve/app.js");
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->headers[0].second, "text/javascript; charset=utf-8");
  EXPECT_EQ(Get(api, "/", "POST")->status, 405);
  EXPECT_FALSE(Get(api, "/api/serve/applications/"));  // left to the REST API
}

TEST_F(DashboardTest, RefusesTraversalHiddenUnknownAndEscapingLinks) {
  OneReplicaApi api("");
  for (const char* target :
       {"/static/../secret.js", "/static/serve/../../secret.js", "/static/%2e%2e/secret.js",
        "/static//secret.js", "/static/serve/./app.js", "/static/serve/.app.js",
        "/static/serve/notes.bin", "/static/serve/missing.js", "/static/serve/link.js",
        "/static/", "/static/serve", "/static/serve\\app.js"}) {
    auto r = Get(api, target);
    ASSERT_TRUE(r) << target;
    EXPECT_EQ(r->status, 404) << target;
    EXPECT_EQ(r->body.find("classified"), std::string::npos) << target;
  }
  options_.web_dir = "";
  EXPECT_EQ(Get(api, "/")->status, 404);
}

TEST_F(DashboardTest, ReplicaLogsTailOnlyInsideTheSessionLogs) {
  OneReplicaApi api((root_ / "session/logs/serve/replica.log").string());
  auto r = Get(api, "/api/serve/replicas/abc123/logs?lines=2");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "two\nthree\n");
  EXPECT_EQ(Get(api, "/api/serve/replicas/abc123/logs")->body, "one\ntwo\nthree\n");
  EXPECT_EQ(Get(api, "/api/serve/replicas/other/logs")->status, 404);
  EXPECT_EQ(Get(api, "/api/serve/replicas//logs")->status, 404);
  EXPECT_EQ(Get(api, "/api/serve/replicas/abc123/../x/logs")->status, 404);
  for (const char* bad : {"0", "abc", "10001", "-1", "2x"}) {
    auto b = Get(api, std::string("/api/serve/replicas/abc123/logs?lines=") + bad);
    EXPECT_EQ(b->status, 400) << bad;
    EXPECT_NE(b->body.find("'lines'"), std::string::npos);
  }
  OneReplicaApi outside((root_ / "secret.js").string());
  EXPECT_EQ(Get(outside, "/api/serve/replicas/abc123/logs")->status, 404);
  OneReplicaApi dotted((root_ / "session/logs/../../secret.js").string());
  EXPECT_EQ(Get(dotted, "/api/serve/replicas/abc123/logs")->status, 404);
}

TEST_F(DashboardTest, TailFileBoundsLinesAndBytes) {
  fs::path f = root_ / "tail.log";
  Write(f, "aaaa\nbbbb\ncccc\ndddd");
  EXPECT_EQ(*TailFile(f.string(), 2, 1 << 20), "cccc\ndddd");
  EXPECT_EQ(*TailFile(f.string(), 10, 1 << 20), "aaaa\nbbbb\ncccc\ndddd");
  EXPECT_EQ(*TailFile(f.string(), 10, 12), "cccc\ndddd");  // the cut "bb" line is dropped
  EXPECT_FALSE(TailFile((root_ / "none.log").string(), 1, 10));
}

}  // namespace
}  // namespace serve::controller

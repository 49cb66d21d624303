// Unit tests of import path parsing, library resolution and deployment config resolution.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <optional>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/deployment_config.h"
#include "config/import_path.h"

namespace serve::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

// ---- ParseImportPath ----------------------------------------------------------------------

TEST(ParseImportPathTest, ColonForm) {
  auto p = ParseImportPath("mod:app");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->module, "mod");
  EXPECT_EQ(p->attr, "app");
}

TEST(ParseImportPathTest, DotForm) {
  auto p = ParseImportPath("mod.app");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->module, "mod");
  EXPECT_EQ(p->attr, "app");
}

TEST(ParseImportPathTest, DottedModuleWithColon) {
  auto p = ParseImportPath("a.b:c");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->module, "a.b");
  EXPECT_EQ(p->attr, "c");
}

TEST(ParseImportPathTest, DotFormSplitsAtLastDot) {
  auto p = ParseImportPath("a.b.c");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->module, "a.b");
  EXPECT_EQ(p->attr, "c");
}

TEST(ParseImportPathTest, RejectsInvalidPaths) {
  for (const char* bad : {"", "mod", "a:b:c", ":app", "mod:", ".app", "mod."}) {
    auto p = ParseImportPath(bad);
    ASSERT_FALSE(p.ok()) << "'" << bad << "' was accepted";
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(p.status().message()), HasSubstr("import_path")) << bad;
  }
}

// ---- ResolveLibrary -----------------------------------------------------------------------

// Sets (or unsets, for nullopt) an environment variable for the scope; restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class ResolveLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "serve_unit_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = fs::path(tmpl).lexically_normal();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // Creates an empty file (and its parent directories); returns its path.
  fs::path Touch(const fs::path& rel) {
    fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p).put('\0');
    return p;
  }
  fs::path MakeDir(const fs::path& rel) {
    fs::path p = root_ / rel;
    fs::create_directories(p);
    return p;
  }

  fs::path root_;
  ScopedEnv no_app_path_{"SERVE_APP_PATH", std::nullopt};
};

TEST_F(ResolveLibraryTest, FindsLibPrefixedLibrary) {
  fs::path lib = Touch("app/libmymod.so");
  auto r = ResolveLibrary("mymod", (root_ / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, FindsBareLibrary) {
  fs::path lib = Touch("app/mymod.so");
  auto r = ResolveLibrary("mymod", (root_ / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, PrefersLibPrefixedName) {
  fs::path lib = Touch("app/libmymod.so");
  Touch("app/mymod.so");
  auto r = ResolveLibrary("mymod", (root_ / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, DottedModuleMapsToSubdirectory) {
  fs::path lib = Touch("app/pkg/libinner.so");
  auto r = ResolveLibrary("pkg.inner", (root_ / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, ResultIsAbsoluteAndNormalised) {
  fs::path lib = Touch("app/libmymod.so");
  MakeDir("other");
  auto r = ResolveLibrary("mymod", (root_ / "other" / ".." / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, SearchesServeAppPath) {
  fs::path app_dir = MakeDir("empty");
  MakeDir("first");
  fs::path lib = Touch("second/libmymod.so");
  ScopedEnv env("SERVE_APP_PATH", (root_ / "first").string() + ":" + (root_ / "second").string());
  auto r = ResolveLibrary("mymod", app_dir.string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, lib.string());
}

TEST_F(ResolveLibraryTest, AppDirComesBeforeServeAppPath) {
  fs::path in_app_dir = Touch("app/libmymod.so");
  Touch("env/libmymod.so");
  ScopedEnv env("SERVE_APP_PATH", (root_ / "env").string());
  auto r = ResolveLibrary("mymod", (root_ / "app").string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, in_app_dir.string());
}

TEST_F(ResolveLibraryTest, ServeAppPathIgnoredOnceUnset) {
  Touch("env/libmymod.so");
  fs::path app_dir = MakeDir("app");
  {
    ScopedEnv env("SERVE_APP_PATH", (root_ / "env").string());
    ASSERT_TRUE(ResolveLibrary("mymod", app_dir.string()).ok());
  }
  auto r = ResolveLibrary("mymod", app_dir.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ResolveLibraryTest, NotFoundNamesEveryDirectoryTried) {
  fs::path app_dir = MakeDir("app");
  fs::path env_dir = MakeDir("env");
  ScopedEnv env("SERVE_APP_PATH", env_dir.string());
  auto r = ResolveLibrary("missing", app_dir.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  std::string msg(r.status().message());
  EXPECT_THAT(msg, HasSubstr(app_dir.string()));
  EXPECT_THAT(msg, HasSubstr(env_dir.string()));
  EXPECT_THAT(msg, HasSubstr("libmissing.so"));
  EXPECT_THAT(msg, HasSubstr("missing"));
}

TEST_F(ResolveLibraryTest, DirectoryNamedLikeLibraryIsNotALibrary) {
  fs::path app_dir = MakeDir("app");
  MakeDir("app/libmymod.so");
  auto r = ResolveLibrary("mymod", app_dir.string());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(LibrarySearchPathTest, AppDirThenServeAppPathEntries) {
  ScopedEnv env("SERVE_APP_PATH", "/x::/y");
  EXPECT_EQ(LibrarySearchPath("/app"), (std::vector<std::string>{"/app", "/x", "/y"}));
  EXPECT_EQ(LibrarySearchPath(""), (std::vector<std::string>{".", "/x", "/y"}));
}

// ---- ResolveDeploymentConfig ----------------------------------------------------------------

TEST(ResolveDeploymentConfigTest, Defaults) {
  auto c = ResolveDeploymentConfig({{"name", "D"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->name, "D");
  EXPECT_EQ(c->num_replicas, 1);
  EXPECT_EQ(c->max_ongoing_requests, 100);
  EXPECT_EQ(c->max_queued_requests, -1);
  EXPECT_EQ(c->health_check_period_s, 10.0);
  EXPECT_EQ(c->health_check_timeout_s, 30.0);
  EXPECT_EQ(c->graceful_shutdown_wait_loop_s, 2.0);
  EXPECT_EQ(c->graceful_shutdown_timeout_s, 20.0);
  EXPECT_EQ(c->ray_actor_options, (json{{"num_cpus", 1}}));
  EXPECT_FALSE(c->user_config.has_value());
  EXPECT_FALSE(c->max_replicas_per_node.has_value());
  EXPECT_FALSE(c->logging_config.has_value());
}

TEST(ResolveDeploymentConfigTest, NullFieldsKeepDefaults) {
  auto c = ResolveDeploymentConfig(
      {{"name", "D"}, {"num_replicas", nullptr}, {"user_config", nullptr}, {"ray_actor_options", nullptr}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_replicas, 1);
  EXPECT_FALSE(c->user_config.has_value());
  EXPECT_EQ(c->ray_actor_options, (json{{"num_cpus", 1}}));
}

TEST(ResolveDeploymentConfigTest, Overrides) {
  json o = {{"name", "D"},
            {"num_replicas", 3},
            {"max_ongoing_requests", 7},
            {"max_queued_requests", 20},
            {"user_config", {{"threshold", 5}}},
            {"health_check_period_s", 1.5},
            {"health_check_timeout_s", 4},
            {"graceful_shutdown_wait_loop_s", 0},
            {"graceful_shutdown_timeout_s", 0.5},
            {"ray_actor_options", {{"num_cpus", 0.5}, {"num_gpus", 1}}},
            {"max_replicas_per_node", 2},
            {"logging_config", {{"log_level", "DEBUG"}}}};
  auto c = ResolveDeploymentConfig(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_replicas, 3);
  EXPECT_EQ(c->max_ongoing_requests, 7);
  EXPECT_EQ(c->max_queued_requests, 20);
  EXPECT_EQ(c->user_config, (json{{"threshold", 5}}));
  EXPECT_EQ(c->health_check_period_s, 1.5);
  EXPECT_EQ(c->health_check_timeout_s, 4.0);
  EXPECT_EQ(c->graceful_shutdown_wait_loop_s, 0.0);
  EXPECT_EQ(c->graceful_shutdown_timeout_s, 0.5);
  EXPECT_EQ(c->ray_actor_options, (json{{"num_cpus", 0.5}, {"num_gpus", 1}}));
  EXPECT_EQ(c->max_replicas_per_node, 2);
  EXPECT_EQ(c->logging_config, (json{{"log_level", "DEBUG"}}));
}

TEST(ResolveDeploymentConfigTest, ActorOptionsWithoutCpusGetOneCpu) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"ray_actor_options", {{"num_gpus", 1}}}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ray_actor_options, (json{{"num_gpus", 1}, {"num_cpus", 1}}));
}

TEST(ResolveDeploymentConfigTest, ToJsonView) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"num_replicas", 2}});
  ASSERT_TRUE(c.ok()) << c.status();
  json j = ToJson(*c);
  EXPECT_EQ(j.at("name"), "D");
  EXPECT_EQ(j.at("num_replicas"), 2);
  EXPECT_EQ(j.at("max_ongoing_requests"), 100);
  EXPECT_EQ(j.at("max_queued_requests"), -1);
  EXPECT_TRUE(j.at("user_config").is_null());
  EXPECT_EQ(j.at("health_check_period_s"), 10.0);
  EXPECT_EQ(j.at("ray_actor_options"), (json{{"num_cpus", 1}}));
  EXPECT_FALSE(j.contains("max_replicas_per_node"));
  EXPECT_FALSE(j.contains("logging_config"));
}

struct BadConfigCase {
  const char* field;
  json value;
};

void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.field << "=" << c.value.dump(); }

class ResolveDeploymentConfigErrorTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(ResolveDeploymentConfigErrorTest, NamesTheField) {
  const BadConfigCase& bad = GetParam();
  json o = {{"name", "D"}};
  o[bad.field] = bad.value;
  auto c = ResolveDeploymentConfig(o);
  ASSERT_FALSE(c.ok()) << bad.field << "=" << bad.value.dump() << " was accepted";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(bad.field));
}

INSTANTIATE_TEST_SUITE_P(
    BadValues, ResolveDeploymentConfigErrorTest,
    ::testing::Values(BadConfigCase{"max_ongoing_requests", 0},
                      BadConfigCase{"max_ongoing_requests", -3},
                      BadConfigCase{"max_queued_requests", 0},
                      BadConfigCase{"max_queued_requests", -2},
                      BadConfigCase{"max_queued_requests", 1.5},
                      BadConfigCase{"num_replicas", "x"},
                      BadConfigCase{"num_replicas", -1},
                      BadConfigCase{"num_replicas", 2.5},
                      BadConfigCase{"health_check_period_s", 0},
                      BadConfigCase{"health_check_period_s", "10"},
                      BadConfigCase{"health_check_timeout_s", 0},
                      BadConfigCase{"graceful_shutdown_wait_loop_s", -1},
                      BadConfigCase{"graceful_shutdown_timeout_s", -0.5},
                      BadConfigCase{"max_replicas_per_node", 0},
                      BadConfigCase{"max_replicas_per_node", 101}),
    [](const ::testing::TestParamInfo<BadConfigCase>& info) {
      return std::string(info.param.field) + "_" + std::to_string(info.index);
    });

TEST(ResolveDeploymentConfigTest, NegativeActorResourceNamesTheField) {
  auto c = ResolveDeploymentConfig({{"name", "D"}, {"ray_actor_options", {{"num_gpus", -1}}}});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("num_gpus"));
}

TEST(ResolveDeploymentConfigTest, MissingNameIsAnError) {
  for (const json& o : {json::object(), json{{"name", ""}}, json{{"num_replicas", 1}}}) {
    auto c = ResolveDeploymentConfig(o);
    ASSERT_FALSE(c.ok()) << o.dump();
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("name"));
  }
}

TEST(ResolveDeploymentConfigTest, NonObjectIsAnError) {
  auto c = ResolveDeploymentConfig(json::array());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace serve::config

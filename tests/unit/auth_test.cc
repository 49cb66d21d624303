// The cluster token's pieces (rpc/auth.h): generation, validation, constant-time comparison,
// token files and the environment, the Bearer header, the Host check against DNS rebinding and
// the REST API's rule.

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rpc/auth.h"

namespace serve::rpc {
namespace {

const std::string kToken = "0123456789abcdef0123456789abcdef";

TEST(ClusterToken, GeneratedTokensAre64HexDigitsAndDiffer) {
  auto a = GenerateClusterToken();
  auto b = GenerateClusterToken();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 64u);
  EXPECT_EQ(a->find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(ValidateToken(*a).ok());
}

TEST(ClusterToken, ValidationRejectsShortLongAndSpacedTokens) {
  EXPECT_FALSE(ValidateToken("short").ok());
  EXPECT_FALSE(ValidateToken(std::string(kMaxTokenSize + 1, 'a')).ok());
  EXPECT_FALSE(ValidateToken("0123456789abcdef 0123456789").ok());
  EXPECT_FALSE(ValidateToken(std::string("0123456789abcdef\n0123", 21)).ok());
  EXPECT_TRUE(ValidateToken(kToken).ok());
  // The message never repeats the token.
  std::string spaced = "secret-secret-secret secret";
  EXPECT_EQ(std::string(ValidateToken(spaced).message()).find("secret"), std::string::npos);
}

TEST(ClusterToken, MatchesOnlyTheSameToken) {
  EXPECT_TRUE(TokenMatches(kToken, kToken));
  std::string other = kToken;
  other.back() = 'e';
  EXPECT_FALSE(TokenMatches(kToken, other));
  EXPECT_FALSE(TokenMatches(kToken, kToken.substr(1)));
  EXPECT_FALSE(TokenMatches(kToken, kToken + "0"));
  EXPECT_FALSE(TokenMatches(kToken, ""));
  EXPECT_FALSE(TokenMatches("", ""));  // no expected token matches nothing
}

TEST(ClusterToken, BearerValueRoundTrips) {
  EXPECT_EQ(BearerValue(kToken), "Bearer " + kToken);
  EXPECT_EQ(BearerToken("Bearer " + kToken), kToken);
  EXPECT_EQ(BearerToken("bearer  " + kToken + " "), kToken);
  EXPECT_EQ(BearerToken("Basic " + kToken), "");
  EXPECT_EQ(BearerToken(kToken), "");
  EXPECT_EQ(BearerToken("Bearer"), "");
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("serve_auth_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    ::unsetenv(kTokenFileEnv);
    ::unsetenv(kTokenEnv);
  }
  void TearDown() override {
    ::unsetenv(kTokenFileEnv);
    ::unsetenv(kTokenEnv);
    std::filesystem::remove_all(dir_);
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(TokenFileTest, WrittenOwnerOnlyAndReadBackTrimmed) {
  ASSERT_TRUE(WriteTokenFile(Path("token"), kToken).ok());
  struct stat st {};
  ASSERT_EQ(::stat(Path("token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto read = ReadTokenFile(Path("token"));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, kToken);
}

TEST_F(TokenFileTest, ErrorsNameThePathNotTheContent) {
  auto missing = ReadTokenFile(Path("missing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find(Path("missing")), std::string::npos);
  std::ofstream(Path("bad")) << "not a token: secret words";
  auto bad = ReadTokenFile(Path("bad"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).find("secret"), std::string::npos);
}

TEST_F(TokenFileTest, EnvironmentPrefersTheFileOverTheToken) {
  auto none = TokenFromEnvironment();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  std::string direct = "fedcba9876543210fedcba9876543210";
  ::setenv(kTokenEnv, direct.c_str(), 1);
  auto from_var = TokenFromEnvironment();
  ASSERT_TRUE(from_var.ok() && from_var->has_value());
  EXPECT_EQ(**from_var, direct);

  ASSERT_TRUE(WriteTokenFile(Path("token"), kToken).ok());
  ::setenv(kTokenFileEnv, Path("token").c_str(), 1);
  auto from_file = TokenFromEnvironment();
  ASSERT_TRUE(from_file.ok() && from_file->has_value());
  EXPECT_EQ(**from_file, kToken);

  // A named file that cannot be read is an error, never "no token".
  ::setenv(kTokenFileEnv, Path("missing").c_str(), 1);
  EXPECT_FALSE(TokenFromEnvironment().ok());
  EXPECT_FALSE(LoadClusterTokenFromEnvironment().ok());
}

TEST_F(TokenFileTest, AdoptingPassesChildrenTheFileNeverTheToken) {
  EXPECT_FALSE(AdoptClusterToken("", Path("stored")).ok());  // none given: refused
  ::setenv(kTokenEnv, kToken.c_str(), 1);
  ASSERT_TRUE(AdoptClusterToken("", Path("stored")).ok());
  EXPECT_EQ(std::getenv(kTokenEnv), nullptr);
  ASSERT_NE(std::getenv(kTokenFileEnv), nullptr);
  EXPECT_EQ(std::string(std::getenv(kTokenFileEnv)), Path("stored"));
  struct stat st {};
  ASSERT_EQ(::stat(Path("stored").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(ClusterToken(), kToken);
  auto child = TokenFromEnvironment();  // what a child started now reads
  ASSERT_TRUE(child.ok() && child->has_value());
  EXPECT_EQ(**child, kToken);
  SetClusterToken("");
}

TEST(HostAllowed, IpLiteralsLocalhostAndOwnNames) {
  std::vector<std::string> names = {"head-1", "serve.internal."};
  for (const char* ok : {"", "127.0.0.1", "127.0.0.1:8265", "10.0.0.7:80", "[::1]:8265",
                         "[::1]", "localhost", "LOCALHOST:8265", "app.localhost:1",
                         "localhost.:8265", "head-1:8265", "HEAD-1", "serve.internal",
                         "serve.internal.:8265"}) {
    EXPECT_TRUE(HostAllowed(ok, names)) << ok;
  }
}

TEST(HostAllowed, OtherSitesAndMalformedValues) {
  std::vector<std::string> names = {"head-1"};
  for (const char* bad :
       {"evil.example", "evil.example:8265", "127.0.0.1.evil.example", "localhost.evil.example",
        "head-1.evil.example", "[::1", "[::1]x", "[not-an-ip]:80", "127.0.0.1:http", ":8265",
        "head-2", "1.2.3:80"}) {
    EXPECT_FALSE(HostAllowed(bad, names)) << bad;
  }
}

HttpServerRequest Request(std::string host, bool loopback,
                          std::optional<std::string> authorization = std::nullopt) {
  HttpServerRequest r;
  r.method = "GET";
  r.target = "/api/serve/applications/";
  r.host = std::move(host);
  r.peer = loopback ? "127.0.0.1:5555" : "10.0.0.9:5555";
  r.peer_loopback = loopback;
  if (authorization) r.headers.emplace_back("Authorization", *authorization);
  return r;
}

TEST(CheckRestRequest, LoopbackIsTrustedByDefault) {
  RestAuthOptions o{kToken, true, {}};
  EXPECT_FALSE(CheckRestRequest(o, Request("127.0.0.1:8265", true)));
  auto remote = CheckRestRequest(o, Request("10.0.0.1:8265", false));
  ASSERT_TRUE(remote);
  EXPECT_EQ(remote->status, 401);
}

TEST(CheckRestRequest, WithoutTheExemptionLoopbackNeedsTheToken) {
  RestAuthOptions o{kToken, false, {}};
  auto refused = CheckRestRequest(o, Request("127.0.0.1:8265", true));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 401);
  bool challenge = false;
  for (auto& [k, v] : refused->headers) challenge |= k == "www-authenticate" && v == "Bearer";
  EXPECT_TRUE(challenge);
  EXPECT_EQ(refused->body.find(kToken), std::string::npos);
  auto wrong = CheckRestRequest(o, Request("127.0.0.1:8265", true, "Bearer " + kToken + "x"));
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_FALSE(CheckRestRequest(o, Request("127.0.0.1:8265", true, "Bearer " + kToken)));
}

TEST(CheckRestRequest, TheTokenAdmitsAnyPeerAndHost) {
  RestAuthOptions o{kToken, false, {}};
  EXPECT_FALSE(CheckRestRequest(o, Request("10.0.0.1:8265", false, "Bearer " + kToken)));
  EXPECT_FALSE(CheckRestRequest(o, Request("serve.example.com", false, "bearer " + kToken)));
}

TEST(CheckRestRequest, ForeignHostIsRefusedEvenFromLoopback) {
  for (const std::string& token : {kToken, std::string()}) {
    RestAuthOptions o{token, true, {"head-1"}};
    auto refused = CheckRestRequest(o, Request("evil.example:8265", true));
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 403);
    EXPECT_FALSE(CheckRestRequest(o, Request("head-1:8265", true)));
  }
}

TEST(CheckRestRequest, NoTokenConfiguredLeavesOnlyTheHostCheck) {
  RestAuthOptions o{"", false, {}};
  EXPECT_FALSE(CheckRestRequest(o, Request("10.0.0.1:8265", false)));
  EXPECT_FALSE(CheckRestRequest(o, Request("10.0.0.1:8265", false, "Bearer anything")));
}

}  // namespace
}  // namespace serve::rpc

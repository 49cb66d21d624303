// The TLS options reach the proxy: file paths as flags, the key's password only in the
// environment (never on the command line).
#include <algorithm>
#include <string>
#include <variant>

#include <gtest/gtest.h>

#include "controller/proxy_state.h"
#include "controller_fakes.h"

namespace serve::controller::testing {
namespace {

const v1::StartProcessRequest& StartRequest(const Actions& actions) {
  EXPECT_EQ(actions.size(), 1u);
  return std::get<StartProxyAction>(actions.at(0)).request;
}

std::string ArgAfter(const v1::StartProcessRequest& req, const std::string& flag) {
  auto it = std::find(req.args().begin(), req.args().end(), flag);
  return it == req.args().end() || it + 1 == req.args().end() ? "" : *(it + 1);
}

TEST(ProxyStartTest, TlsFilesAsFlagsAndThePasswordInTheEnvironment) {
  ControllerContext context;
  context.options.node_id = "head";
  context.options.ssl_keyfile = "/certs/server.key";
  context.options.ssl_certfile = "/certs/server.pem";
  context.options.ssl_keyfile_password = "pw";
  context.options.ssl_ca_certs = "/certs/ca.pem";
  FakeClock clock;
  ProxyStateManager proxies(context, clock);
  Actions actions;
  proxies.Reconcile({{"head", ""}}, false, actions);
  const auto& req = StartRequest(actions);
  EXPECT_EQ(ArgAfter(req, "--ssl-keyfile"), "/certs/server.key");
  EXPECT_EQ(ArgAfter(req, "--ssl-certfile"), "/certs/server.pem");
  EXPECT_EQ(ArgAfter(req, "--ssl-ca-certs"), "/certs/ca.pem");
  EXPECT_EQ(std::count(req.args().begin(), req.args().end(), "pw"), 0);
  ASSERT_EQ(req.env_size(), 1);
  EXPECT_EQ(req.env(0).key(), "SERVE_SSL_KEYFILE_PASSWORD");
  EXPECT_EQ(req.env(0).value(), "pw");
}

TEST(ProxyStartTest, NoTlsNoTlsFlags) {
  ControllerContext context;
  context.options.node_id = "head";
  FakeClock clock;
  ProxyStateManager proxies(context, clock);
  Actions actions;
  proxies.Reconcile({{"head", ""}}, false, actions);
  const auto& req = StartRequest(actions);
  for (const auto& arg : req.args()) EXPECT_EQ(arg.rfind("--ssl", 0), std::string::npos) << arg;
  EXPECT_EQ(req.env_size(), 0);
}

}  // namespace
}  // namespace serve::controller::testing

#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "proxy/proxy.h"
#include "rpc/auth.h"

int main(int argc, char** argv) {
  CLI::App app{"serve-proxy: the HTTP and gRPC ingress of one node"};
  serve::proxy::ProxyOptions options;
  app.add_option("--controller-address", options.controller_address)->required();
  app.add_option("--node-id", options.node_id)->required();
  app.add_option("--session-dir", options.session_dir)->required();
  app.add_option("--http-host", options.http_host);
  app.add_option("--http-port", options.http_port);
  app.add_option("--keep-alive-timeout-s", options.keep_alive_timeout_s);
  app.add_option("--request-timeout-s", options.request_timeout_s);
  app.add_option("--min-draining-period-s", options.min_draining_period_s);
  app.add_option("--grpc-port", options.grpc_port);
  app.add_option("--grpc-servicer-functions", options.grpc_services,
                 "fully-qualified gRPC service names served (repeatable)");
  app.add_option("--grpc-request-timeout-s", options.grpc_request_timeout_s);
  app.add_option("--ssl-keyfile", options.tls.keyfile);
  app.add_option("--ssl-certfile", options.tls.certfile);
  app.add_option("--ssl-ca-certs", options.tls.ca_certs);
  CLI11_PARSE(app, argc, argv);
  // The token reaches the controller and the replicas; the ingress ports stay open.
  if (auto st = serve::rpc::LoadClusterTokenFromEnvironment(); !st.ok()) {
    std::cerr << "serve-proxy: " << st.message() << "\n";
    return 2;
  }
  // The key's password comes in the environment, not on the command line (visible in ps).
  if (const char* password = std::getenv(serve::proxy::kSslKeyfilePasswordEnv)) {
    options.tls.keyfile_password = password;
    ::unsetenv(serve::proxy::kSslKeyfilePasswordEnv);
  }
  return serve::proxy::RunProxy(options);
}

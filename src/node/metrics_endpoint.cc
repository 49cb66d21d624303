#include "node/metrics_endpoint.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "common/util.h"
#include "rpc/http_server.h"

namespace serve::node {

struct MetricsEndpoint::Impl {
  boost::asio::io_context io{1};
  std::unique_ptr<rpc::HttpServer> server;
  std::thread thread;
};

MetricsEndpoint::MetricsEndpoint(metrics::NodeStore& store, const std::string& host, int port)
    : impl_(std::make_unique<Impl>()) {
  rpc::HttpServerOptions options;
  options.host = host;
  options.port = port;
  rpc::ApplyListenerLimitsFromEnvironment(options);
  impl_->server = std::make_unique<rpc::HttpServer>(
      impl_->io,
      [&store](rpc::HttpServerRequest req, std::function<void(rpc::HttpServerResponse)> done) {
        rpc::HttpServerResponse r;
        std::string path = req.target.substr(0, req.target.find('?'));
        if (req.method != "GET" && req.method != "HEAD") {
          r.status = 405;
          r.body = "Method " + req.method + " not allowed.";
        } else if (path == "/metrics" || path == "/") {
          r.headers.emplace_back("content-type", "text/plain; version=0.0.4; charset=utf-8");
          r.body = store.Text();
        } else {
          r.status = 404;
          r.body = "Not found: " + path + " (metrics are at /metrics)";
        }
        done(std::move(r));
      },
      options);
  unsigned short bound = 0;
  try {
    bound = impl_->server->Listen();
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (auto bracket = what.find(" ["); bracket != std::string::npos) what.resize(bracket);
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) +
                             " for the metrics endpoint: " + what);
  }
  address_ = host + ":" + std::to_string(bound);
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

MetricsEndpoint::~MetricsEndpoint() {
  boost::asio::post(impl_->io, [this] {
    impl_->server->Close();
    impl_->io.stop();
  });
  impl_->thread.join();
}

void UpdateServiceDiscovery(const std::string& session_dir, const std::string& target, bool add) {
  std::string path = session_dir + "/prom_metrics_service_discovery.json";
  int lock = ::open((path + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  nlohmann::json targets = nlohmann::json::array();
  if (auto text = ReadFile(path)) {
    auto doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_array() && !doc.empty() && doc[0].contains("targets") &&
        doc[0]["targets"].is_array()) {
      targets = doc[0]["targets"];
    }
  }
  nlohmann::json next = nlohmann::json::array();
  for (const auto& t : targets) {
    if (t.is_string() && t.get<std::string>() != target) next.push_back(t);
  }
  if (add) next.push_back(target);
  nlohmann::json doc = nlohmann::json::array();
  doc.push_back({{"labels", {{"job", "ray"}}}, {"targets", next}});
  WriteFileAtomic(path, doc.dump(2) + "\n");
  if (lock >= 0) ::close(lock);  // releases the flock
}

}  // namespace serve::node

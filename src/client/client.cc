#include <serve/client.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "common/util.h"
#include "replica/handle_runtime.h"
#include "rpc/grpc_util.h"
#include "sdk/host.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve {
namespace {

struct Connection {
  std::mutex mu;
  std::string address;
  std::unique_ptr<replica::ReplicaHandleRuntime> runtime;
};
Connection& State() {
  static Connection* c = new Connection();  // never destroyed: handles may outlive main
  return *c;
}

std::string Address() {
  {
    std::lock_guard lock(State().mu);
    if (!State().address.empty()) return State().address;
  }
  connect();
  std::lock_guard lock(State().mu);
  return State().address;
}

std::unique_ptr<v1::Controller::Stub> Stub() {
  return v1::Controller::NewStub(rpc::ChannelTo(Address()));
}

[[noreturn]] void Fail(const std::string& what, const grpc::Status& st) {
  throw ServeException(what + ": " + st.error_message());
}

}  // namespace

void connect(const ClientOptions& options) {
  std::string address = options.controller_address;
  if (address.empty()) {
    std::string root = options.temp_dir.empty() ? EnvString("SERVE_TEMP_DIR", "/tmp/serve")
                                                : options.temp_dir;
    auto text = ReadFile(root + "/session_latest/controller_address");
    if (!text) {
      throw ServeException("No running serve instance found under " + root +
                           " (start one with `serve start`).");
    }
    address = *text;
  }
  auto& s = State();
  std::lock_guard lock(s.mu);
  sdk::SetHandleRuntime(nullptr);
  s.runtime = std::make_unique<replica::ReplicaHandleRuntime>(address, "default");
  sdk::SetHandleRuntime(s.runtime.get());
  s.address = address;
}

DeploymentHandle run(const std::string& import_path, const RunOptions& options) {
  auto stub = Stub();
  v1::DeployApplicationRequest req;
  req.set_name(options.name);
  req.set_import_path(import_path);
  req.set_has_route_prefix(options.route_prefix.has_value());
  req.set_route_prefix(options.route_prefix.value_or(""));
  req.set_args_json(Json(options.args).dump());
  std::error_code ec;
  req.set_app_dir(std::filesystem::absolute(options.app_dir, ec).lexically_normal().string());
  auto ctx = rpc::ContextWithDeadline(30);
  v1::DeployApplicationReply reply;
  grpc::Status st = stub->DeployApplication(ctx.get(), req, &reply);
  if (!st.ok()) Fail("Deploying '" + options.name + "' failed", st);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(options.timeout_s * 1000));
  while (true) {
    Json apps = status().value("applications", Json::object());
    if (apps.contains(options.name)) {
      const Json& app = apps[options.name];
      std::string s = app.value("status", "");
      if (s == "RUNNING") return get_app_handle(options.name);
      if (s == "DEPLOY_FAILED") {
        throw ServeException("Deploying '" + options.name + "' failed: " +
                             app.value("message", ""));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw ServeException("'" + options.name + "' did not become RUNNING in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Json status() {
  auto stub = Stub();
  auto ctx = rpc::ContextWithDeadline(10);
  v1::GetDetailsRequest req;
  v1::GetDetailsReply reply;
  grpc::Status st = stub->GetDetails(ctx.get(), req, &reply);
  if (!st.ok()) Fail("Cannot reach the serve controller", st);
  return Json::parse(reply.json());
}

void delete_app(const std::string& name, double timeout_s) {
  auto stub = Stub();
  auto ctx = rpc::ContextWithDeadline(10);
  v1::DeleteApplicationRequest req;
  req.set_name(name);
  v1::Empty reply;
  grpc::Status st = stub->DeleteApplication(ctx.get(), req, &reply);
  if (!st.ok()) Fail("Deleting '" + name + "' failed", st);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  while (status().value("applications", Json::object()).contains(name)) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw ServeException("'" + name + "' was not deleted in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void shutdown() {
  auto stub = Stub();
  auto ctx = rpc::ContextWithDeadline(10);
  v1::ShutdownRequest req;
  v1::Empty reply;
  grpc::Status st = stub->Shutdown(ctx.get(), req, &reply);
  if (!st.ok()) Fail("Shutting serve down failed", st);
  auto& s = State();
  std::lock_guard lock(s.mu);
  sdk::SetHandleRuntime(nullptr);
  s.runtime.reset();
  s.address.clear();
}

}  // namespace serve

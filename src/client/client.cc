#include <serve/client.h>

#include <dlfcn.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "common/util.h"
#include "launch/cluster.h"
#include "replica/handle_runtime.h"
#include "rpc/auth.h"
#include "rpc/grpc_util.h"
#include "sdk/host.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve {
namespace {

struct Connection {
  std::mutex mu;
  std::string address;
  std::unique_ptr<replica::ReplicaHandleRuntime> runtime;
  pid_t agent_pid = -1;  // the head agent of an instance start() launched
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

bool Connected() {
  std::lock_guard lock(State().mu);
  return !State().address.empty();
}

// The serve binaries: $SERVE_BIN_DIR, else the bin/ directory of the prefix this library was
// installed in (or built in): <prefix>/lib[/<arch>]/libserve_client.so -> <prefix>/bin.
std::string BinDir() {
  std::string env = EnvString("SERVE_BIN_DIR", "");
  if (!env.empty()) return env;
  Dl_info info;
  if (::dladdr(reinterpret_cast<void*>(&BinDir), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    auto lib_dir = std::filesystem::canonical(info.dli_fname, ec).parent_path();
    for (auto dir : {lib_dir.parent_path() / "bin", lib_dir.parent_path().parent_path() / "bin"}) {
      if (std::filesystem::exists(dir / "serve-agent", ec)) return dir.string();
    }
  }
  return SelfExeDir();
}

std::unique_ptr<v1::Controller::Stub> Stub() {
  return v1::Controller::NewStub(rpc::ChannelTo(Address()));
}

// One controller RPC; throws ServeException("<what>: <grpc message>") when it fails.
template <class Req, class Reply>
Reply CallController(grpc::Status (v1::Controller::Stub::*method)(grpc::ClientContext*,
                                                                   const Req&, Reply*),
                     const Req& req, const std::string& what, double deadline_s = 10) {
  auto stub = Stub();
  auto ctx = rpc::ContextWithDeadline(deadline_s);
  Reply reply;
  grpc::Status st = ((*stub).*method)(ctx.get(), req, &reply);
  if (!st.ok()) throw ServeException(what + ": " + st.error_message());
  return reply;
}

}  // namespace

void connect(const ClientOptions& options) {
  std::string address = options.controller_address;
  std::string root = launch::TempRoot(options.temp_dir);
  auto token = launch::FindClusterToken(options.token_file, root);
  if (!token.ok()) throw ServeException(std::string(token.status().message()));
  if (*token) rpc::SetClusterToken(**token);
  if (address.empty()) {
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

void start(const StartOptions& options) {
  std::string root = launch::TempRoot(options.temp_dir);
  auto session = launch::CreateSessionDir(root);
  if (!session.ok()) throw ServeException(std::string(session.status().message()));
  launch::ClusterOptions cluster;
  cluster.http_host = options.http_host;
  cluster.http_port = options.http_port;
  cluster.dashboard_port = options.dashboard_port;
  cluster.forward_logs = false;  // the program's stdout is its own
  cluster.bin_dir = BinDir();
  auto started = launch::StartLocalCluster(*session, cluster);
  if (!started.ok()) {
    throw ServeException("Cannot start serve: " + std::string(started.status().message()));
  }
  ClientOptions client;
  client.temp_dir = options.temp_dir;
  client.controller_address = started->controller_address;
  client.token_file = *session + "/" + launch::kClusterTokenFile;
  connect(client);
  std::lock_guard lock(State().mu);
  State().agent_pid = started->agent_pid;
}

DeploymentHandle run(const std::string& import_path, const RunOptions& options) {
  if (!Connected()) {
    ClientOptions client;
    client.temp_dir = options.start.temp_dir;
    try {
      connect(client);
    } catch (const ServeException&) {
      start(options.start);  // none running: like Ray's serve.run, start one
    }
  }
  v1::DeployApplicationRequest req;
  req.set_name(options.name);
  req.set_import_path(import_path);
  req.set_has_route_prefix(options.route_prefix.has_value());
  req.set_route_prefix(options.route_prefix.value_or(""));
  req.set_args_json(Json(options.args).dump());
  std::error_code ec;
  req.set_app_dir(std::filesystem::absolute(options.app_dir, ec).lexically_normal().string());
  CallController(&v1::Controller::Stub::DeployApplication, req,
                 "Deploying '" + options.name + "' failed", 30);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout_s);
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
  v1::GetDetailsReply reply = CallController(&v1::Controller::Stub::GetDetails,
                                             v1::GetDetailsRequest(),
                                             "Cannot reach the serve controller");
  return Json::parse(reply.json());
}

void delete_app(const std::string& name, Duration timeout) {
  v1::DeleteApplicationRequest req;
  req.set_name(name);
  CallController(&v1::Controller::Stub::DeleteApplication, req, "Deleting '" + name + "' failed");
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  while (status().value("applications", Json::object()).contains(name)) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw ServeException("'" + name + "' was not deleted in time");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void shutdown() {
  CallController(&v1::Controller::Stub::Shutdown, v1::ShutdownRequest(),
                 "Shutting serve down failed");
  auto& s = State();
  std::lock_guard lock(s.mu);
  sdk::SetHandleRuntime(nullptr);
  s.runtime.reset();
  s.address.clear();
  if (s.agent_pid > 0) {
    launch::StopAgent(s.agent_pid, 30);  // it exits once everything stopped; reaped here
    s.agent_pid = -1;
  }
}

}  // namespace serve

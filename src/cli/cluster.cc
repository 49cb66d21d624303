#include "cli/cluster.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <thread>
#include <vector>

#include "common/util.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::cli {
namespace fs = std::filesystem;

std::string TempRoot(const std::string& flag) {
  if (!flag.empty()) return flag;
  return EnvString("SERVE_TEMP_DIR", "/tmp/serve");
}

absl::StatusOr<std::string> CreateSessionDir(const std::string& root) {
  std::time_t t = std::time(nullptr);
  char stamp[64];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d_%H-%M-%S", std::localtime(&t));
  std::string dir = root + "/session_" + stamp + "_" + std::to_string(::getpid());
  std::error_code ec;
  fs::create_directories(dir + "/logs/serve", ec);
  if (ec) return absl::InternalError("cannot create session directory " + dir + ": " + ec.message());
  std::string latest = root + "/session_latest";
  std::string tmp = latest + ".tmp" + std::to_string(::getpid());
  fs::remove(tmp, ec);
  fs::create_directory_symlink(fs::path(dir).filename(), tmp, ec);
  if (!ec) fs::rename(tmp, latest, ec);
  return fs::absolute(dir).string();
}

absl::StatusOr<LocalCluster> StartLocalCluster(const std::string& session_dir,
                                               const ClusterOptions& options) {
  std::vector<std::string> args = {SiblingBinary("serve-agent"), "--session-dir", session_dir,
                                   "--head", "--http-host", options.http_host,
                                   "--http-port", std::to_string(options.http_port)};
  if (options.forward_logs) args.push_back("--forward-logs");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    ::setpgid(0, 0);
    if (options.tie_to_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  LocalCluster cluster{session_dir, pid, ""};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto a = ReadFile(session_dir + "/controller_address")) {
      cluster.controller_address = *a;
      return cluster;
    }
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError("the node agent exited during start-up; see " + session_dir +
                                 "/logs/serve/");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopAgent(pid, 0);
  return absl::DeadlineExceededError("the controller did not start within 30 s; see " +
                                     session_dir + "/logs/serve/");
}

absl::StatusOr<std::string> FindControllerAddress(const std::string& root) {
  std::string file = root + "/session_latest/controller_address";
  auto a = ReadFile(file);
  if (!a) {
    return absl::NotFoundError("No running serve instance found (no " + file +
                               "). Start one with `serve run`.");
  }
  return *a;
}

absl::StatusOr<nlohmann::json> GetDetails(const std::string& address) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(address));
  auto ctx = rpc::ContextWithDeadline(10);
  v1::GetDetailsRequest req;
  v1::GetDetailsReply reply;
  grpc::Status st = stub->GetDetails(ctx.get(), req, &reply);
  if (!st.ok()) {
    return absl::UnavailableError("Cannot reach the serve controller at " + address + ": " +
                                  st.error_message());
  }
  return nlohmann::json::parse(reply.json());
}

absl::Status RequestShutdown(const std::string& address) {
  auto stub = v1::Controller::NewStub(rpc::ChannelTo(address));
  auto ctx = rpc::ContextWithDeadline(10);
  v1::ShutdownRequest req;
  v1::Empty reply;
  grpc::Status st = stub->Shutdown(ctx.get(), req, &reply);
  if (!st.ok()) {
    return absl::UnavailableError("Cannot reach the serve controller at " + address + ": " +
                                  st.error_message());
  }
  return absl::OkStatus();
}

void StopAgent(pid_t pid, double timeout_s) {
  auto wait_for = [&](double seconds) {
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    do {
      int status;
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid || r < 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return false;
  };
  if (wait_for(timeout_s)) return;
  ::kill(pid, SIGTERM);
  if (wait_for(15)) return;
  ::kill(pid, SIGKILL);
  wait_for(5);
}

}  // namespace serve::cli

#include "launch/cluster.h"

#include <signal.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <thread>
#include <vector>

#include "common/util.h"
#include "rpc/auth.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::launch {
namespace fs = std::filesystem;

std::string TempRoot(const std::string& flag) {
  if (!flag.empty()) return flag;
  return EnvString("SERVE_TEMP_DIR", "/tmp/serve");
}

absl::StatusOr<std::string> CreateSessionDir(const std::string& root, const std::string& given) {
  std::time_t t = std::time(nullptr);
  char stamp[64];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%d_%H-%M-%S", std::localtime(&t));
  std::string dir = given.empty() ? root + "/session_" + stamp + "_" + std::to_string(::getpid())
                                  : fs::absolute(given).lexically_normal().string();
  std::error_code ec;
  fs::create_directories(root, ec);
  fs::create_directories(dir + "/logs/serve", ec);
  if (ec) return absl::InternalError("cannot create session directory " + dir + ": " + ec.message());
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  std::string latest = root + "/session_latest";
  std::string tmp = latest + ".tmp" + std::to_string(::getpid());
  fs::remove(tmp, ec);
  if (fs::path(dir).parent_path() == fs::absolute(root).lexically_normal()) {
    fs::create_directory_symlink(fs::path(dir).filename(), tmp, ec);
  } else {
    fs::create_directory_symlink(dir, tmp, ec);
  }
  if (!ec) fs::rename(tmp, latest, ec);
  return fs::absolute(dir).string();
}

absl::StatusOr<std::optional<std::string>> FindClusterToken(const std::string& token_file,
                                                            const std::string& root) {
  if (!token_file.empty()) {
    auto token = rpc::ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    return std::optional<std::string>(*std::move(token));
  }
  auto env = rpc::TokenFromEnvironment();
  if (!env.ok() || *env || root.empty()) return env;
  std::string session_file = root + "/session_latest/" + kClusterTokenFile;
  if (!fs::exists(session_file)) return std::optional<std::string>();
  auto token = rpc::ReadTokenFile(session_file);
  if (!token.ok()) return token.status();
  return std::optional<std::string>(*std::move(token));
}

namespace {

// Forks and execs the agent: detached (own session, output to <session>/logs/agent.out) or in
// its own process group, killed with this process.
absl::StatusOr<pid_t> ForkAgent(std::vector<std::string> args, const std::string& session_dir,
                                bool detached) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string out_file = session_dir + "/logs/agent.out";
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    if (detached) {
      ::setsid();
      int fd = ::open(out_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      int devnull = ::open("/dev/null", O_RDONLY);
      if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
    } else {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Writes `token` to <session>/cluster_token; returns that path.
absl::StatusOr<std::string> WriteSessionToken(const std::string& session_dir,
                                              const std::string& token) {
  std::string path = session_dir + "/" + kClusterTokenFile;
  if (auto st = rpc::WriteTokenFile(path, token); !st.ok()) return st;
  return path;
}

// The node options every agent takes: its token file, IP, resource options and metrics port.
void AppendNodeArgs(std::vector<std::string>& args, const std::string& token_file,
                    const std::string& node_ip, const std::vector<std::string>& agent_args,
                    int metrics_export_port) {
  args.push_back("--token-file");
  args.push_back(token_file);
  if (!node_ip.empty()) {
    args.push_back("--node-ip");
    args.push_back(node_ip);
  }
  args.insert(args.end(), agent_args.begin(), agent_args.end());
  if (metrics_export_port >= 0) {
    args.push_back("--metrics-export-port");
    args.push_back(std::to_string(metrics_export_port));
  }
}

// When the agent `pid` (our child) has exited: why, from <session>/startup_error (written by
// the process that gave up: controller/controller.cc, node/agent.cc), else `fallback`.
std::optional<std::string> AgentExitReason(pid_t pid, const std::string& session_dir,
                                           const char* fallback) {
  int status;
  if (::waitpid(pid, &status, WNOHANG) != pid) return std::nullopt;
  std::string why = ReadFile(session_dir + "/startup_error").value_or("");
  while (!why.empty() && (why.back() == '\n' || why.back() == '.')) why.pop_back();
  return why.empty() ? std::string(fallback) : why;
}

}  // namespace

absl::StatusOr<LocalCluster> StartLocalCluster(const std::string& session_dir,
                                               const ClusterOptions& options) {
  nlohmann::json cluster = {{"http_host", options.http_host},
                            {"http_port", options.http_port},
                            {"root_path", options.root_path},
                            {"request_timeout_s", options.request_timeout_s},
                            {"keep_alive_timeout_s", options.keep_alive_timeout_s},
                            {"ssl_keyfile", options.ssl_keyfile},
                            {"ssl_certfile", options.ssl_certfile},
                            {"ssl_keyfile_password", options.ssl_keyfile_password},
                            {"ssl_ca_certs", options.ssl_ca_certs},
                            {"grpc_port", options.grpc_port},
                            {"grpc_servicer_functions", options.grpc_servicer_functions},
                            {"grpc_request_timeout_s", options.grpc_request_timeout_s},
                            {"proxy_location", options.proxy_location},
                            {"dashboard_host", options.dashboard_host},
                            {"dashboard_port", options.dashboard_port},
                            {"app_dir", options.app_dir},
                            {"redis_address", options.redis_address},
                            {"redis_password", options.redis_password},
                            {"cluster_name", options.cluster_name},
                            {"controller_port", options.controller_port}};
  // Addresses left by an instance that was killed; the new one writes its own.
  for (const char* stale : {"controller_address", "dashboard_address", "agent_address", "agent_pid",
                            "startup_error", "metrics_address"}) {
    std::error_code ec;
    fs::remove(session_dir + "/" + stale, ec);
  }
  if (!WritePrivateFileAtomic(session_dir + "/cluster.json", cluster.dump(2))) {
    return absl::InternalError("cannot write " + session_dir + "/cluster.json");
  }
  // The token: the one given, else the reused session's, else a new one.
  std::string token = options.token;
  if (token.empty() && fs::exists(session_dir + "/" + kClusterTokenFile)) {
    auto kept = rpc::ReadTokenFile(session_dir + "/" + kClusterTokenFile);
    if (!kept.ok()) return kept.status();
    token = *std::move(kept);
  }
  if (token.empty()) {
    auto made = rpc::GenerateClusterToken();
    if (!made.ok()) return made.status();
    token = *std::move(made);
  }
  auto token_file = WriteSessionToken(session_dir, token);
  if (!token_file.ok()) return token_file.status();
  rpc::SetClusterToken(token);
  std::string agent =
      options.bin_dir.empty() ? SiblingBinary("serve-agent") : options.bin_dir + "/serve-agent";
  std::vector<std::string> args = {agent, "--session-dir", session_dir, "--head"};
  if (!options.detached && options.forward_logs) args.push_back("--forward-logs");
  AppendNodeArgs(args, *token_file, options.node_ip, options.agent_args,
                 options.metrics_export_port);
  auto forked = ForkAgent(args, session_dir, options.detached);
  if (!forked.ok()) return forked.status();
  pid_t pid = *forked;
  LocalCluster result{session_dir, pid, "", "", ""};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    auto controller = ReadFile(session_dir + "/controller_address");
    auto dashboard = ReadFile(session_dir + "/dashboard_address");
    if (controller && dashboard) {
      result.controller_address = *controller;
      result.dashboard_address = *dashboard;
      result.metrics_address = ReadFile(session_dir + "/metrics_address").value_or("");
      return result;
    }
    if (auto why = AgentExitReason(pid, session_dir,
                                   "the node agent exited before the controller was ready")) {
      return absl::FailedPreconditionError("serve failed to start: " + *why + ". Logs: " +
                                           session_dir + "/logs/");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopAgent(pid, 0);
  return absl::DeadlineExceededError("the controller did not start within 30 s; see " +
                                     session_dir + "/logs/");
}

absl::StatusOr<WorkerNode> StartWorkerNode(const std::string& session_dir,
                                           const WorkerOptions& options) {
  for (const char* stale : {"head_address", "agent_address", "agent_pid", "startup_error",
                            "metrics_address"}) {
    std::error_code ec;
    fs::remove(session_dir + "/" + stale, ec);
  }
  if (auto st = rpc::ValidateToken(options.token); !st.ok()) {
    return absl::InvalidArgumentError("joining a cluster needs its token: " +
                                      std::string(st.message()));
  }
  auto token_file = WriteSessionToken(session_dir, options.token);
  if (!token_file.ok()) return token_file.status();
  std::string agent =
      options.bin_dir.empty() ? SiblingBinary("serve-agent") : options.bin_dir + "/serve-agent";
  std::vector<std::string> args = {agent, "--session-dir", session_dir, "--worker",
                                   "--controller-address", options.controller_address};
  AppendNodeArgs(args, *token_file, options.node_ip, options.agent_args,
                 options.metrics_export_port);
  auto forked = ForkAgent(args, session_dir, /*detached=*/true);
  if (!forked.ok()) return forked.status();
  pid_t pid = *forked;
  // The agent writes head_address once the controller accepted it.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ReadFile(session_dir + "/head_address")) {
      auto node = nlohmann::json::parse(ReadFile(session_dir + "/node.json").value_or("{}"),
                                        nullptr, false);
      WorkerNode w{session_dir, pid, "", "", ""};
      if (node.is_object()) {
        w.node_id = node.value("node_id", "");
        w.node_ip = node.value("node_ip", "");
      }
      w.metrics_address = ReadFile(session_dir + "/metrics_address").value_or("");
      return w;
    }
    if (auto why = AgentExitReason(pid, session_dir,
                                   "the node agent exited before it joined the cluster")) {
      return absl::FailedPreconditionError("the worker node failed to start: " + *why +
                                           ". Logs: " + session_dir + "/logs/");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  StopAgent(pid, 0);
  return absl::DeadlineExceededError("the node did not join the cluster at " +
                                     options.controller_address + " within 30 s; see " +
                                     session_dir + "/logs/serve/agent.log");
}

std::string DashboardAddress(const std::string& flag, const std::string& root) {
  if (!flag.empty()) return flag;
  std::string env = EnvString("SERVE_DASHBOARD_ADDRESS", EnvString("RAY_DASHBOARD_ADDRESS", ""));
  if (!env.empty()) return env;
  if (auto a = ReadFile(root + "/session_latest/dashboard_address")) return *a;
  return "http://localhost:8265";
}

absl::StatusOr<std::string> FindControllerAddress(const std::string& root) {
  std::string file = root + "/session_latest/controller_address";
  auto a = ReadFile(file);
  if (!a) {
    return absl::NotFoundError("No running serve instance found (no " + file +
                               "). Start one with `serve start` or `serve run`.");
  }
  return *a;
}

absl::Status RequestClusterShutdown(const std::string& address) {
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

namespace {
// Alive and not a zombie (a detached agent is reaped by whoever adopted it).
bool ProcessAlive(pid_t pid) {
  if (::kill(pid, 0) != 0) return false;
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  auto close = stat->rfind(')');
  return close == std::string::npos || close + 2 >= stat->size() || (*stat)[close + 2] != 'Z';
}
}  // namespace

std::optional<std::string> LiveSessionDashboard(const std::string& root) {
  std::string session = root + "/session_latest";
  auto pid_text = ReadFile(session + "/agent_pid");
  if (!pid_text) return std::nullopt;
  pid_t pid = static_cast<pid_t>(std::atoi(pid_text->c_str()));
  if (pid <= 0 || !ProcessAlive(pid)) return std::nullopt;
  return ReadFile(session + "/dashboard_address");
}

absl::StatusOr<bool> StopCluster(const std::string& root, double timeout_s) {
  std::string session = root + "/session_latest";
  auto pid_text = ReadFile(session + "/agent_pid");
  if (!pid_text) return false;
  pid_t pid = static_cast<pid_t>(std::atoi(pid_text->c_str()));
  if (pid <= 0 || !ProcessAlive(pid)) return false;
  // A full shutdown through the controller deletes the apps gracefully; the agent then exits.
  if (auto token = rpc::ReadTokenFile(session + "/" + kClusterTokenFile); token.ok()) {
    rpc::SetClusterToken(*std::move(token));
  }
  if (auto controller = ReadFile(session + "/controller_address")) {
    (void)RequestClusterShutdown(*controller);
  } else {
    ::kill(pid, SIGINT);  // a worker node: SIGTERM would drain it first
  }
  auto gone = [&](double seconds) {
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
      if (!ProcessAlive(pid)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  if (gone(timeout_s)) return true;
  ::kill(pid, SIGTERM);
  if (gone(15)) return true;
  ::kill(pid, SIGKILL);
  if (gone(5)) return true;
  return absl::InternalError("the node agent (pid " + std::to_string(pid) + ") did not stop");
}

}  // namespace serve::launch

#pragma once

// The node agent's children (internal to serve-agent; included by agent.cc only): starting
// them on one long-lived thread, reaping them, stopping them with a grace period, and the
// exit callback.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/logging.h"
#include "common/util.h"
#include "serve/v1/agent.pb.h"

namespace serve::node::internal {

// "exited with code 1" / "was killed by signal 9 (Killed)".
inline std::string ExitText(int code) {
  if (code < 0) {
    return "was killed by signal " + std::to_string(-code) + " (" + strsignal(-code) + ")";
  }
  return "exited with code " + std::to_string(code);
}

struct Child {
  pid_t pid = 0;
  std::string tag;
  std::string prefix;
  bool stop_requested = false;
};

/// Owns the children of this node. fork() happens on one long-lived thread, because
/// PR_SET_PDEATHSIG fires when the *thread* that forked exits.
class ProcessTable {
 public:
  explicit ProcessTable(const AgentOptions& options) : options_(options) {
    spawner_ = std::thread([this] { SpawnLoop(); });
    reaper_ = std::thread([this] { ReapLoop(); });
  }
  ~ProcessTable() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    spawner_.join();
    reaper_.join();
  }

  /// Children get $SERVE_AGENT_ADDRESS (where they push their metrics). Set before the first
  /// Start().
  void SetAgentAddress(std::string address) { agent_address_ = std::move(address); }

  using ExitCallback = std::function<void(const Child&, int exit_code)>;
  void OnExit(ExitCallback cb) { on_exit_ = std::move(cb); }

  /// Starts `binary args...`; returns the pid or -1 with `*error` set.
  pid_t Start(const v1::StartProcessRequest& req, std::string* error) {
    std::promise<std::pair<pid_t, std::string>> done;
    auto fut = done.get_future();
    {
      std::lock_guard lock(mu_);
      spawn_queue_.push_back([&] { done.set_value(DoSpawn(req)); });
    }
    cv_.notify_all();
    auto [pid, err] = fut.get();
    *error = err;
    return pid;
  }

  /// SIGTERM now, SIGKILL after `grace_s` unless it exited.
  void Stop(pid_t pid, double grace_s) {
    {
      std::lock_guard lock(mu_);
      auto it = children_.find(pid);
      if (it == children_.end()) return;
      it->second.stop_requested = true;
    }
    ::kill(pid, SIGTERM);
    std::thread([this, pid, grace_s] {
      auto deadline = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
      std::unique_lock lock(mu_);
      exited_cv_.wait_until(lock, deadline, [&] { return !children_.count(pid); });
      if (children_.count(pid)) ::kill(pid, SIGKILL);
    }).detach();
  }

  std::vector<Child> List() {
    std::lock_guard lock(mu_);
    std::vector<Child> out;
    for (auto& [pid, c] : children_) out.push_back(c);
    return out;
  }

  /// Stops every child and waits (bounded) for all of them to exit.
  void StopAll(double grace_s) {
    std::vector<pid_t> pids;
    {
      std::lock_guard lock(mu_);
      for (auto& [pid, c] : children_) {
        c.stop_requested = true;
        pids.push_back(pid);
      }
    }
    for (pid_t p : pids) ::kill(p, SIGTERM);
    std::unique_lock lock(mu_);
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
    if (!exited_cv_.wait_until(lock, deadline, [&] { return children_.empty(); })) {
      for (auto& [pid, c] : children_) ::kill(pid, SIGKILL);
      exited_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return children_.empty(); });
    }
  }

 private:
  std::pair<pid_t, std::string> DoSpawn(const v1::StartProcessRequest& req) {
    int out_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) return {-1, std::strerror(errno)};
    std::vector<std::string> argv_s;
    argv_s.push_back(req.binary());
    for (auto& a : req.args()) argv_s.push_back(a);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) env_s.emplace_back(*e);
    if (!agent_address_.empty()) env_s.push_back("SERVE_AGENT_ADDRESS=" + agent_address_);
    for (auto& kv : req.env()) env_s.push_back(kv.key() + "=" + kv.value());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string cwd = req.working_dir();
    pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid == 0) {
      // Child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out_pipe[1], STDOUT_FILENO);
      ::dup2(out_pipe[1], STDERR_FILENO);
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    if (pid < 0) {
      ::close(out_pipe[0]);
      return {-1, std::strerror(errno)};
    }
    {
      std::lock_guard lock(mu_);
      children_[pid] = Child{pid, req.tag(), req.log_prefix(), false};
    }
    cv_.notify_all();
    std::string prefix = "(" + req.log_prefix() + " pid=" + std::to_string(pid) + ") ";
    std::thread([fd = out_pipe[0], prefix, forward = options_.forward_logs] {
      ForwardOutput(fd, prefix, forward);
    }).detach();
    spdlog::info("Started {} as pid {}: {}", req.tag(), pid, req.binary());
    return {pid, ""};
  }

  // Copies a child's output to our stdout, each line prefixed; all complete lines of one read
  // go out in one write.
  static void ForwardOutput(int fd, const std::string& prefix, bool forward) {
    std::string partial, out;
    char buf[16384];
    while (true) {
      ssize_t n = ::read(fd, buf, sizeof(buf));
      if (n <= 0) break;
      if (!forward) continue;
      partial.append(buf, static_cast<size_t>(n));
      size_t start = 0, nl;
      while ((nl = partial.find('\n', start)) != std::string::npos) {
        out.append(prefix).append(partial, start, nl - start + 1);
        start = nl + 1;
      }
      partial.erase(0, start);
      Emit(out);
      out.clear();
    }
    if (forward && !partial.empty()) Emit(prefix + partial + "\n");
    ::close(fd);
  }

  static void Emit(const std::string& text) {
    if (text.empty()) return;
    static std::mutex out_mu;
    std::lock_guard lock(out_mu);
    std::cout << text << std::flush;
  }

  void SpawnLoop() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !spawn_queue_.empty(); });
      if (spawn_queue_.empty() && stopping_) return;
      auto job = std::move(spawn_queue_.front());
      spawn_queue_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  void ReapLoop() {
    while (true) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !children_.empty(); });
        if (stopping_ && children_.empty()) return;
      }
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, 0);
      if (pid <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      int code = WIFEXITED(status) ? WEXITSTATUS(status)
                                   : (WIFSIGNALED(status) ? -WTERMSIG(status) : -1);
      Child child;
      {
        std::lock_guard lock(mu_);
        auto it = children_.find(pid);
        if (it == children_.end()) continue;
        child = it->second;
        children_.erase(it);
      }
      exited_cv_.notify_all();
      // An unexpected controller exit gets its one line from the restart logic instead.
      if (child.tag != "controller" || child.stop_requested) {
        spdlog::info("{} (pid {}) {}{}", child.tag, pid, ExitText(code),
                     child.stop_requested ? " (stop requested)" : "");
      }
      if (on_exit_) on_exit_(child, code);
    }
  }

  const AgentOptions& options_;
  std::string agent_address_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable exited_cv_;
  std::map<pid_t, Child> children_;
  std::deque<std::function<void()>> spawn_queue_;
  bool stopping_ = false;
  ExitCallback on_exit_;
  std::thread spawner_;
  std::thread reaper_;
};

}  // namespace serve::node::internal

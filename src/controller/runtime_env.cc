#include "controller/runtime_env.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "config/limits.h"

namespace serve::controller {
namespace fs = std::filesystem;

namespace {

// Stable name for a source: its path plus the newest mtime under it, so edits make a new copy.
std::string CopyName(const fs::path& src) {
  std::error_code ec;
  auto newest = fs::last_write_time(src, ec).time_since_epoch().count();
  if (fs::is_directory(src, ec)) {
    for (auto& e : fs::recursive_directory_iterator(src, ec)) {
      newest = std::max(newest, fs::last_write_time(e.path(), ec).time_since_epoch().count());
    }
  }
  size_t h = std::hash<std::string>{}(fs::absolute(src).string() + "@" + std::to_string(newest));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016zx", h);
  return buf;
}

absl::Status Unzip(const fs::path& zip, const fs::path& dest) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) ::dup2(devnull, STDOUT_FILENO);
    ::execlp("unzip", "unzip", "-q", "-o", zip.c_str(), "-d", dest.c_str(), nullptr);
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    return absl::InvalidArgumentError("runtime_env.working_dir: cannot extract '" + zip.string() +
                                      "' (is it a valid .zip and is `unzip` installed?)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PreparedRuntimeEnv> PrepareRuntimeEnv(const nlohmann::json& env,
                                                     const std::string& session_dir) {
  PreparedRuntimeEnv out;
  if (env.is_null()) return out;
  if (!env.is_object()) return absl::InvalidArgumentError("runtime_env must be a mapping");
  for (auto& [key, value] : env.items()) {
    if (key == "env_vars") {
      if (!value.is_object()) {
        return absl::InvalidArgumentError("runtime_env.env_vars must be a mapping of strings");
      }
      for (auto& [k, v] : value.items()) {
        if (std::string why = config::limits::CheckEnvVarName(k); !why.empty()) {
          return absl::InvalidArgumentError("runtime_env.env_vars." + k +
                                            ": environment variable " + k + " " + why);
        }
        if (!v.is_string()) {
          return absl::InvalidArgumentError("runtime_env.env_vars." + k + " must be a string");
        }
        out.env_vars[k] = v.get<std::string>();
      }
    } else if (key == "working_dir") {
      if (value.is_null()) continue;
      if (!value.is_string()) return absl::InvalidArgumentError("runtime_env.working_dir must be a string");
      std::string uri = value.get<std::string>();
      if (uri.rfind("file://", 0) == 0) {
        uri = uri.substr(7);
      } else if (uri.find("://") != std::string::npos) {
        return absl::InvalidArgumentError(
            "runtime_env.working_dir: remote URI '" + uri +
            "' is not supported; use a local directory, a local .zip or a file:// URI");
      }
      fs::path src(uri);
      std::error_code ec;
      if (!fs::exists(src, ec)) {
        return absl::InvalidArgumentError("runtime_env.working_dir: '" + uri + "' does not exist");
      }
      fs::path dest =
          fs::path(session_dir) / "runtime_resources" / "working_dir_files" / CopyName(src);
      if (!fs::exists(dest, ec)) {
        fs::path tmp = dest.string() + ".tmp" + std::to_string(::getpid());
        fs::remove_all(tmp, ec);
        fs::create_directories(tmp, ec);
        if (fs::is_directory(src, ec)) {
          fs::copy(src, tmp, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
          if (ec) {
            return absl::InvalidArgumentError("runtime_env.working_dir: cannot copy '" + uri +
                                              "': " + ec.message());
          }
        } else if (src.extension() == ".zip") {
          if (auto st = Unzip(src, tmp); !st.ok()) return st;
        } else {
          return absl::InvalidArgumentError("runtime_env.working_dir: '" + uri +
                                            "' must be a directory or a .zip file");
        }
        fs::rename(tmp, dest, ec);
        if (ec && !fs::exists(dest)) {
          return absl::InternalError("runtime_env.working_dir: " + ec.message());
        }
      }
      out.working_dir = fs::absolute(dest).string();
    } else {
      return absl::InvalidArgumentError("runtime_env." + key +
                                        " is not supported (supported: env_vars, working_dir)");
    }
  }
  return out;
}

}  // namespace serve::controller

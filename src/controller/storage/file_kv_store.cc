#include "controller/storage/file_kv_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace serve::controller {
namespace {

constexpr size_t kMaxEscapedKeyLength = 240;  // NAME_MAX is 255 on Linux file systems.
constexpr std::string_view kTempPrefix = ".tmp.";
constexpr char kHexDigits[] = "0123456789ABCDEF";

// Abseil here is built with its own string_view, not an alias of std::string_view.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool IsSafeChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

std::string EscapeKey(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (unsigned char c : key) {
    if (IsSafeChar(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHexDigits[c >> 4]);
      out.push_back(kHexDigits[c & 0xF]);
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // Lower case is not canonical.
}

// Decodes a file name written by EscapeKey; false for anything EscapeKey cannot produce
// (temp files, foreign files, non-canonical escapes).
bool UnescapeKey(std::string_view name, std::string* key) {
  if (name.empty()) return false;
  key->clear();
  for (size_t i = 0; i < name.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (IsSafeChar(c)) {
      key->push_back(static_cast<char>(c));
      continue;
    }
    if (c != '%' || i + 2 >= name.size()) return false;
    const int hi = HexValue(name[i + 1]);
    const int lo = HexValue(name[i + 2]);
    if (hi < 0 || lo < 0) return false;
    const unsigned char decoded = static_cast<unsigned char>(hi * 16 + lo);
    if (IsSafeChar(decoded)) return false;  // Would have been written literally.
    key->push_back(static_cast<char>(decoded));
    i += 2;
  }
  return true;
}

absl::StatusOr<std::string> FileNameForKey(std::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("FileKvStore: key must not be empty");
  std::string name = EscapeKey(key);
  if (name.size() > kMaxEscapedKeyLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FileKvStore: key too long (", name.size(), " bytes once escaped, at most ",
        kMaxEscapedKeyLength, "): '", absl::CHexEscape(AbslView(key.substr(0, 64))), "...'"));
  }
  return name;
}

absl::Status ErrnoError(int error, std::string_view what, std::string_view path) {
  return absl::ErrnoToStatus(
      error, absl::StrCat("FileKvStore: ", AbslView(what), " '", AbslView(path), "'"));
}

// Closes a file descriptor on scope exit unless released.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

absl::Status WriteAll(int fd, std::string_view data, std::string_view path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

uint64_t RandomNonce() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileKvStore>> FileKvStore::Create(std::string dir) {
  if (dir.empty()) return absl::InvalidArgumentError("FileKvStore: directory path is empty");
  std::error_code ec;
  std::filesystem::path path = std::filesystem::absolute(dir, ec);
  if (ec) return ErrnoError(ec.value(), "cannot resolve directory", dir);
  path = path.lexically_normal();
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoError(ec.value(), "cannot create directory", path.string());
  if (!std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("FileKvStore: '", path.string(), "' is not a directory"));
  }
  std::string abs = path.string();
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();  // lexically_normal keeps "x/".
  // Make the directory's own entry durable (best effort: the parent may not be readable).
  if (ScopedFd parent(::open(std::filesystem::path(abs).parent_path().c_str(),
                             O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      parent.get() >= 0) {
    ::fsync(parent.get());
  }
  std::unique_ptr<FileKvStore> store(new FileKvStore(std::move(abs)));
  // Prove now, not at the first checkpoint, that files can be written and synced here.
  absl::StatusOr<std::string> probe = store->WriteTempFile("probe");
  if (!probe.ok()) return probe.status();
  if (::unlink(probe->c_str()) != 0) return ErrnoError(errno, "cannot remove", *probe);
  return store;
}

FileKvStore::FileKvStore(std::string dir) : dir_(std::move(dir)), temp_nonce_(RandomNonce()) {}

absl::StatusOr<std::string> FileKvStore::WriteTempFile(std::string_view value) {
  std::string path;
  int raw_fd = -1;
  for (int attempt = 0; raw_fd < 0; ++attempt) {
    path = absl::StrCat(dir_, "/", AbslView(kTempPrefix), ::getpid(), ".", absl::Hex(temp_nonce_),
                        ".", temp_counter_.fetch_add(1, std::memory_order_relaxed));
    raw_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (raw_fd < 0 && (errno != EEXIST || attempt >= 100)) {
      return ErrnoError(errno, "cannot create", path);
    }
  }
  ScopedFd fd(raw_fd);
  absl::Status status = WriteAll(fd.get(), value, path);
  if (status.ok() && ::fsync(fd.get()) != 0) status = ErrnoError(errno, "cannot fsync", path);
  if (status.ok() && ::close(fd.release()) != 0) status = ErrnoError(errno, "cannot close", path);
  if (!status.ok()) {
    ::unlink(path.c_str());
    return status;
  }
  return path;
}

absl::Status FileKvStore::SyncDir() {
  ScopedFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, "cannot open directory", dir_);
  if (::fsync(fd.get()) != 0) return ErrnoError(errno, "cannot fsync directory", dir_);
  return absl::OkStatus();
}

absl::Status FileKvStore::Put(std::string_view key, std::string_view value) {
  absl::StatusOr<std::string> name = FileNameForKey(key);
  if (!name.ok()) return name.status();
  absl::StatusOr<std::string> temp = WriteTempFile(value);
  if (!temp.ok()) return temp.status();
  const std::string path = absl::StrCat(dir_, "/", *name);
  if (::rename(temp->c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(temp->c_str());
    return ErrnoError(error, "cannot rename temp file to", path);
  }
  return SyncDir();
}

absl::StatusOr<std::string> FileKvStore::Get(std::string_view key) {
  absl::StatusOr<std::string> name = FileNameForKey(key);
  if (!name.ok()) return name.status();
  const std::string path = absl::StrCat(dir_, "/", *name);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(
          "FileKvStore: no key '", absl::CHexEscape(AbslView(key)), "' in '", dir_, "'"));
    }
    return ErrnoError(errno, "cannot open", path);
  }
  std::string value;
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) value.reserve(static_cast<size_t>(st.st_size));
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot read", path);
    }
    if (n == 0) break;
    value.append(buffer, static_cast<size_t>(n));
  }
  return value;
}

absl::Status FileKvStore::Delete(std::string_view key) {
  absl::StatusOr<std::string> name = FileNameForKey(key);
  if (!name.ok()) return name.status();
  const std::string path = absl::StrCat(dir_, "/", *name);
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoError(errno, "cannot remove", path);
  }
  return SyncDir();
}

absl::StatusOr<std::vector<std::string>> FileKvStore::Keys(std::string_view prefix) {
  DIR* dir = ::opendir(dir_.c_str());
  if (dir == nullptr) return ErrnoError(errno, "cannot list directory", dir_);
  std::vector<std::string> keys;
  std::string key;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir);
    if (entry == nullptr) break;
    const std::string_view name = entry->d_name;
    if (name.front() == '.' || !UnescapeKey(name, &key)) continue;  // Temp or foreign file.
    if (entry->d_type != DT_REG) {
      struct stat st {};
      if (entry->d_type != DT_UNKNOWN || ::fstatat(::dirfd(dir), entry->d_name, &st, 0) != 0 ||
          !S_ISREG(st.st_mode)) {
        continue;  // A directory or other non-file someone put here.
      }
    }
    if (key.starts_with(prefix)) keys.push_back(key);
  }
  const int error = errno;
  ::closedir(dir);
  if (error != 0) return ErrnoError(error, "cannot list directory", dir_);
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace serve::controller

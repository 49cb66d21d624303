// Contract tests for every KvStore implementation, plus tests of what only one backend does.
// The Redis tests run against a real redis-server that each test starts on a free loopback
// port and kills when it ends.

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/storage/file_kv_store.h"
#include "controller/storage/kv_store.h"
#include "controller/storage/redis_kv_store.h"

namespace serve::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// ---------------------------------------------------------------------------- status helpers

const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status: " << status;
  return status.ok();
}

MATCHER_P(StatusIs, code, "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status: " << status;
  return status.code() == code;
}

#define ASSERT_OK_AND_ASSIGN(lhs, expr)            \
  auto lhs##_or = (expr);                          \
  ASSERT_TRUE(lhs##_or.ok()) << lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

// ---------------------------------------------------------------------------- process helpers

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                          "/serve_kv_store_test.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed: " << errno;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A loopback TCP port that was free a moment ago (bound to port 0, then released).
int PickFreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

std::string FindOnPath(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + std::string(name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A redis-server child process on 127.0.0.1 without persistence. The child gets
// PR_SET_PDEATHSIG(SIGKILL), so it dies with the test even if the test crashes.
class RedisServer {
 public:
  RedisServer() = default;
  ~RedisServer() { Stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts redis-server on `port` with `extra_args` and waits (at most 10 s) until it answers
  // PING (or NOAUTH, when it wants a password).
  absl::Status Start(int port, std::vector<std::string> extra_args = {}) {
    Stop();
    const std::string binary = FindOnPath("redis-server");
    if (binary.empty()) return absl::NotFoundError("redis-server not found on PATH");
    port_ = port;
    log_path_ = dir_.path() + "/redis_" + std::to_string(port) + ".log";
    std::vector<std::string> args = {
        binary,         "--port", std::to_string(port), "--bind", "127.0.0.1", "--save",   "",
        "--appendonly", "no",     "--daemonize",        "no",     "--dir",     dir_.path()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) return absl::InternalError("cannot open " + log_path_);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      return absl::InternalError("fork failed");
    }
    if (pid == 0) {  // Child: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      const int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int wstatus = 0;
      if (::waitpid(pid_, &wstatus, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::InternalError("redis-server exited at start-up; log:\n" +
                                   ReadWholeFile(log_path_));
      }
      if (AnswersPing()) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Stop();
    return absl::DeadlineExceededError("redis-server did not answer PING within 10 s; log:\n" +
                                       ReadWholeFile(log_path_));
  }

  // Starts on a free port, retrying with another port if one was taken meanwhile.
  absl::Status StartOnFreePort(std::vector<std::string> extra_args = {}) {
    absl::Status status;
    for (int attempt = 0; attempt < 5; ++attempt) {
      status = Start(PickFreePort(), extra_args);
      if (status.ok()) return status;
    }
    return status;
  }

  // Kills the server (SIGKILL) and reaps it. Idempotent.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  void Pause() { ::kill(pid_, SIGSTOP); }
  void Resume() { ::kill(pid_, SIGCONT); }
  int port() const { return port_; }

 private:
  bool AnswersPing() const {
    redisContext* context = redisConnectWithTimeout("127.0.0.1", port_, timeval{0, 200'000});
    bool ok = false;
    if (context != nullptr && context->err == 0) {
      redisSetTimeout(context, timeval{0, 200'000});
      auto* reply = static_cast<redisReply*>(redisCommand(context, "PING"));
      if (reply != nullptr) {
        const std::string_view text(reply->str != nullptr ? reply->str : "",
                                    reply->str != nullptr ? reply->len : 0);
        ok = (reply->type == REDIS_REPLY_STATUS && text == "PONG") ||
             (reply->type == REDIS_REPLY_ERROR && text.starts_with("NOAUTH"));
        freeReplyObject(reply);
      }
    }
    if (context != nullptr) redisFree(context);
    return ok;
  }

  TempDir dir_;  // Working directory and log of the server.
  std::string log_path_;
  int port_ = 0;
  pid_t pid_ = -1;
};

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xFF);
  return bytes;
}

// ---------------------------------------------------------------------------- backends

// Each backend environment owns the storage (a directory, a redis-server) and opens stores
// on it; Open() called twice yields two instances over the same data.
class FileBackend {
 public:
  absl::Status SetUp() { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<KvStore>> Open() {
    return FileKvStore::Create(dir_.path() + "/store");
  }

 private:
  TempDir dir_;
};

class RedisBackend {
 public:
  absl::Status SetUp() { return server_.StartOnFreePort(); }
  absl::StatusOr<std::unique_ptr<KvStore>> Open() {
    RedisOptions options;
    options.port = server_.port();
    options.namespace_prefix = "serve:contract:";
    return RedisKvStore::Create(options);
  }

 private:
  RedisServer server_;
};

// ---------------------------------------------------------------------------- contract suite

template <typename Backend>
class KvStoreContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(backend_.SetUp(), IsOk());
    absl::StatusOr<std::unique_ptr<KvStore>> store = backend_.Open();
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
  }

  Backend backend_;
  std::unique_ptr<KvStore> store_;
};

TYPED_TEST_SUITE_P(KvStoreContractTest);

TYPED_TEST_P(KvStoreContractTest, PutThenGetReturnsTheValue) {
  ASSERT_THAT(this->store_->Put("app#dep", "hello"), IsOk());
  EXPECT_THAT(this->store_->Get("app#dep"), IsOk());
  EXPECT_EQ(*this->store_->Get("app#dep"), "hello");
}

TYPED_TEST_P(KvStoreContractTest, ValuesAreBinarySafe) {
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  const std::string values[] = {all_bytes, std::string("\0", 1), std::string("a\0b\0\0c", 6),
                                std::string("\r\n$3\r\nSET\r\n")};
  for (const std::string& value : values) {
    ASSERT_THAT(this->store_->Put("bin", value), IsOk());
    ASSERT_OK_AND_ASSIGN(got, this->store_->Get("bin"));
    EXPECT_EQ(got, value);
  }
}

TYPED_TEST_P(KvStoreContractTest, OneMebibyteValueRoundTrips) {
  const std::string value = RandomBytes(1 << 20, 42);
  ASSERT_EQ(value.find('\0') == std::string::npos, false);  // Has NUL bytes.
  ASSERT_THAT(this->store_->Put("big", value), IsOk());
  ASSERT_OK_AND_ASSIGN(got, this->store_->Get("big"));
  EXPECT_EQ(got.size(), value.size());
  EXPECT_TRUE(got == value);  // Not EXPECT_EQ: don't print 1 MiB on failure.
}

TYPED_TEST_P(KvStoreContractTest, EmptyValueRoundTrips) {
  ASSERT_THAT(this->store_->Put("empty", ""), IsOk());
  ASSERT_OK_AND_ASSIGN(got, this->store_->Get("empty"));
  EXPECT_EQ(got, "");
}

TYPED_TEST_P(KvStoreContractTest, PutOverwritesWithShorterAndLongerValues) {
  ASSERT_THAT(this->store_->Put("k", "a long first value"), IsOk());
  ASSERT_THAT(this->store_->Put("k", "short"), IsOk());
  EXPECT_EQ(*this->store_->Get("k"), "short");
  ASSERT_THAT(this->store_->Put("k", "a longer third value"), IsOk());
  EXPECT_EQ(*this->store_->Get("k"), "a longer third value");
  EXPECT_THAT(*this->store_->Keys(""), ElementsAre("k"));
}

TYPED_TEST_P(KvStoreContractTest, GetMissingKeyIsNotFound) {
  EXPECT_THAT(this->store_->Get("nope"), StatusIs(absl::StatusCode::kNotFound));
}

TYPED_TEST_P(KvStoreContractTest, DeleteRemovesTheKey) {
  ASSERT_THAT(this->store_->Put("k", "v"), IsOk());
  ASSERT_THAT(this->store_->Put("other", "v"), IsOk());
  ASSERT_THAT(this->store_->Delete("k"), IsOk());
  EXPECT_THAT(this->store_->Get("k"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(*this->store_->Keys(""), ElementsAre("other"));
  EXPECT_EQ(*this->store_->Get("other"), "v");
}

TYPED_TEST_P(KvStoreContractTest, DeleteMissingKeyIsOk) {
  EXPECT_THAT(this->store_->Delete("never-written"), IsOk());
  ASSERT_THAT(this->store_->Put("k", "v"), IsOk());
  ASSERT_THAT(this->store_->Delete("k"), IsOk());
  EXPECT_THAT(this->store_->Delete("k"), IsOk());
}

TYPED_TEST_P(KvStoreContractTest, KeysReturnsExactlyTheKeysWithThePrefix) {
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    char key[32];
    std::snprintf(key, sizeof(key), "app#dep:%04d", i);
    expected.push_back(key);
  }
  // Written in shuffled order: Keys() must sort.
  std::vector<std::string> order = expected;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  for (const std::string& key : order) ASSERT_THAT(this->store_->Put(key, key), IsOk());
  for (const char* key : {"app", "app#", "apq#dep:0001", "other:1", "APP#dep:0001"}) {
    ASSERT_THAT(this->store_->Put(key, "x"), IsOk());
  }

  ASSERT_OK_AND_ASSIGN(keys, this->store_->Keys("app#dep:"));
  EXPECT_EQ(keys, expected);
  ASSERT_OK_AND_ASSIGN(with_hash, this->store_->Keys("app#"));
  EXPECT_EQ(with_hash.size(), 1001u);  // "app#" itself matches its own prefix.
  ASSERT_OK_AND_ASSIGN(all, this->store_->Keys(""));
  EXPECT_EQ(all.size(), 1005u);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
  EXPECT_THAT(*this->store_->Keys("app#dep:09"),
              UnorderedElementsAreArray(
                  std::vector<std::string>(expected.begin() + 900, expected.begin() + 1000)));
  EXPECT_THAT(*this->store_->Keys("zzz"), IsEmpty());
}

TYPED_TEST_P(KvStoreContractTest, KeysPrefixIsLiteralNotAPattern) {
  for (const char* key : {"a*b", "a?c", "a[1]", "a\\d", "ab", "aXc", "a1]"}) {
    ASSERT_THAT(this->store_->Put(key, "v"), IsOk());
  }
  EXPECT_THAT(*this->store_->Keys("a*"), ElementsAre("a*b"));
  EXPECT_THAT(*this->store_->Keys("a?"), ElementsAre("a?c"));
  EXPECT_THAT(*this->store_->Keys("a["), ElementsAre("a[1]"));
  EXPECT_THAT(*this->store_->Keys("a\\"), ElementsAre("a\\d"));
  EXPECT_THAT(*this->store_->Keys("a.*"), IsEmpty());
}

TYPED_TEST_P(KvStoreContractTest, KeysOnAnEmptyStoreIsEmpty) {
  EXPECT_THAT(*this->store_->Keys(""), IsEmpty());
  EXPECT_THAT(*this->store_->Keys("x"), IsEmpty());
}

TYPED_TEST_P(KvStoreContractTest, KeysWithSpecialCharactersRoundTrip) {
  const std::vector<std::string> keys = {"a/b",      "../up",
                                         "..",       ".",
                                         "c:d#e",    "/abs",
                                         "%41",      "A",
                                         "a b",      std::string("nul\0key", 7),
                                         "\xc3\xbc", "dir/",
                                         ".hidden",  "DEPLOYMENT_TARGETS:app#dep"};
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_THAT(this->store_->Put(keys[i], "value" + std::to_string(i)), IsOk()) << keys[i];
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(got, this->store_->Get(keys[i]));
    EXPECT_EQ(got, "value" + std::to_string(i)) << keys[i];
  }
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(*this->store_->Keys(""), sorted);
  EXPECT_THAT(*this->store_->Keys("."), ElementsAre(".", "..", "../up", ".hidden"));
}

TYPED_TEST_P(KvStoreContractTest, EmptyKeyIsInvalidArgument) {
  EXPECT_THAT(this->store_->Put("", "v"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(this->store_->Get(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(this->store_->Delete(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TYPED_TEST_P(KvStoreContractTest, ValuesSurviveANewStoreInstance) {
  ASSERT_THAT(this->store_->Put("checkpoint", std::string("state\0v1", 8)), IsOk());
  ASSERT_THAT(this->store_->Put("gone", "x"), IsOk());
  ASSERT_THAT(this->store_->Delete("gone"), IsOk());
  this->store_.reset();
  ASSERT_OK_AND_ASSIGN(reopened, this->backend_.Open());
  ASSERT_OK_AND_ASSIGN(got, reopened->Get("checkpoint"));
  EXPECT_EQ(got, std::string("state\0v1", 8));
  EXPECT_THAT(*reopened->Keys(""), ElementsAre("checkpoint"));
}

TYPED_TEST_P(KvStoreContractTest, TwoInstancesSeeEachOthersWrites) {
  ASSERT_OK_AND_ASSIGN(second, this->backend_.Open());
  ASSERT_THAT(this->store_->Put("k", "from first"), IsOk());
  EXPECT_EQ(*second->Get("k"), "from first");
  ASSERT_THAT(second->Delete("k"), IsOk());
  EXPECT_THAT(this->store_->Get("k"), StatusIs(absl::StatusCode::kNotFound));
}

TYPED_TEST_P(KvStoreContractTest, ConcurrentCallsFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kKeysPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &failures] {
      for (int i = 0; i < kKeysPerThread; ++i) {
        const std::string key = "t" + std::to_string(t) + ":" + std::to_string(i);
        const std::string value = RandomBytes(100 + static_cast<size_t>(i), t * 1000 + i);
        if (!this->store_->Put(key, value).ok()) ++failures[t];
        absl::StatusOr<std::string> got = this->store_->Get(key);
        if (!got.ok() || *got != value) ++failures[t];
        if (!this->store_->Put("shared", "thread" + std::to_string(t)).ok()) ++failures[t];
        if (!this->store_->Keys("t").ok()) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(failures, ::testing::Each(0));
  EXPECT_EQ(this->store_->Keys("t")->size(), static_cast<size_t>(kThreads * kKeysPerThread));
  EXPECT_THAT(*this->store_->Get("shared"), ::testing::StartsWith("thread"));
}

REGISTER_TYPED_TEST_SUITE_P(KvStoreContractTest, PutThenGetReturnsTheValue, ValuesAreBinarySafe,
                            OneMebibyteValueRoundTrips, EmptyValueRoundTrips,
                            PutOverwritesWithShorterAndLongerValues, GetMissingKeyIsNotFound,
                            DeleteRemovesTheKey, DeleteMissingKeyIsOk,
                            KeysReturnsExactlyTheKeysWithThePrefix, KeysPrefixIsLiteralNotAPattern,
                            KeysOnAnEmptyStoreIsEmpty, KeysWithSpecialCharactersRoundTrip,
                            EmptyKeyIsInvalidArgument, ValuesSurviveANewStoreInstance,
                            TwoInstancesSeeEachOthersWrites, ConcurrentCallsFromManyThreads);

INSTANTIATE_TYPED_TEST_SUITE_P(FileKvStore, KvStoreContractTest, FileBackend);
INSTANTIATE_TYPED_TEST_SUITE_P(RedisKvStore, KvStoreContractTest, RedisBackend);

// ---------------------------------------------------------------------------- FileKvStore

class FileKvStoreTest : public ::testing::Test {
 protected:
  std::string StoreDir() const { return temp_.path() + "/store"; }

  // Every entry under temp_ (recursively), relative to it.
  std::set<std::string> TreeEntries() const {
    std::set<std::string> entries;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(temp_.path())) {
      entries.insert(std::filesystem::relative(entry.path(), temp_.path()).string());
    }
    return entries;
  }

  TempDir temp_;
};

TEST_F(FileKvStoreTest, KeysThatLookLikePathsStayInsideTheDirectory) {
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(StoreDir()));
  const std::vector<std::string> keys = {
      "a/b", "../escape", "..", ".", "../../etc/passwd", "/abs", "x:y#z", "sub/dir/key", "~"};
  for (const std::string& key : keys) ASSERT_THAT(store->Put(key, key), IsOk());

  size_t files = 0;
  for (const std::string& entry : TreeEntries()) {
    if (entry == "store") continue;
    ASSERT_EQ(entry.rfind("store/", 0), 0u) << "escaped the directory: " << entry;
    EXPECT_EQ(entry.find('/', 6), std::string::npos) << "nested entry: " << entry;
    EXPECT_NE(entry[6], '.') << "hidden name: " << entry;
    EXPECT_TRUE(std::filesystem::is_regular_file(temp_.path() + "/" + entry)) << entry;
    ++files;
  }
  EXPECT_EQ(files, keys.size());
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(*store->Keys(""), sorted);
  for (const std::string& key : keys) EXPECT_EQ(*store->Get(key), key);
}

TEST_F(FileKvStoreTest, OrphanTempFilesAreNeverVisible) {
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(StoreDir()));
  ASSERT_THAT(store->Put("checkpoint", "good"), IsOk());
  // What a crash in the middle of a Put leaves behind.
  std::ofstream(StoreDir() + "/.tmp.12345.deadbeef.0") << "partial";
  std::ofstream(StoreDir() + "/.tmp.") << "";
  EXPECT_EQ(*store->Get("checkpoint"), "good");
  EXPECT_THAT(*store->Keys(""), ElementsAre("checkpoint"));

  // A new instance (a restarted controller) is not confused by them either.
  ASSERT_OK_AND_ASSIGN(reopened, FileKvStore::Create(StoreDir()));
  EXPECT_EQ(*reopened->Get("checkpoint"), "good");
  EXPECT_THAT(*reopened->Keys(""), ElementsAre("checkpoint"));
  ASSERT_THAT(reopened->Put("checkpoint", "newer"), IsOk());
  EXPECT_EQ(*store->Get("checkpoint"), "newer");
}

TEST_F(FileKvStoreTest, PutLeavesNoTempFileBehind) {
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(StoreDir()));
  ASSERT_THAT(store->Put("a", "1"), IsOk());
  ASSERT_THAT(store->Put("a", "2"), IsOk());
  ASSERT_THAT(store->Put("b", "3"), IsOk());
  ASSERT_THAT(store->Delete("b"), IsOk());
  EXPECT_EQ(TreeEntries(), (std::set<std::string>{"store", "store/a"}));
}

TEST_F(FileKvStoreTest, ForeignFilesAndDirectoriesAreNotKeys) {
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(StoreDir()));
  ASSERT_THAT(store->Put("real", "v"), IsOk());
  std::ofstream(StoreDir() + "/bad%zz") << "x";      // Not a valid escape.
  std::ofstream(StoreDir() + "/x%41") << "x";        // Non-canonical: 'A' is never escaped.
  std::ofstream(StoreDir() + "/lower%2f") << "x";    // Non-canonical: lower-case hex.
  std::ofstream(StoreDir() + "/trailing%4") << "x";  // Truncated escape.
  std::filesystem::create_directory(StoreDir() + "/subdir");
  EXPECT_THAT(*store->Keys(""), ElementsAre("real"));
}

TEST_F(FileKvStoreTest, CreateMakesMissingParentDirectories) {
  const std::string dir = temp_.path() + "/a/b/c";
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(dir));
  EXPECT_TRUE(std::filesystem::is_directory(dir));
  EXPECT_EQ(store->dir(), dir);
  ASSERT_THAT(store->Put("k", "v"), IsOk());
}

TEST_F(FileKvStoreTest, CreateFailsClearlyWhenThePathIsUnderAFile) {
  std::ofstream(temp_.path() + "/file") << "not a directory";
  const std::string dir = temp_.path() + "/file/store";
  absl::StatusOr<std::unique_ptr<FileKvStore>> store = FileKvStore::Create(dir);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(dir));
}

TEST_F(FileKvStoreTest, CreateFailsClearlyWhenThePathIsAFile) {
  const std::string path = temp_.path() + "/file";
  std::ofstream(path) << "not a directory";
  absl::StatusOr<std::unique_ptr<FileKvStore>> store = FileKvStore::Create(path);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
}

TEST_F(FileKvStoreTest, CreateFailsClearlyWhenTheDirectoryIsNotWritable) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const std::string dir = temp_.path() + "/readonly";
  std::filesystem::create_directory(dir);
  ::chmod(dir.c_str(), 0500);
  absl::StatusOr<std::unique_ptr<FileKvStore>> store = FileKvStore::Create(dir);
  ::chmod(dir.c_str(), 0700);
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(dir));
}

TEST_F(FileKvStoreTest, CreateRejectsAnEmptyPath) {
  EXPECT_THAT(FileKvStore::Create(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(FileKvStoreTest, OverlongKeysAreInvalidArgument) {
  ASSERT_OK_AND_ASSIGN(store, FileKvStore::Create(StoreDir()));
  EXPECT_THAT(store->Put(std::string(240, 'k'), "v"), IsOk());
  EXPECT_THAT(store->Put(std::string(241, 'k'), "v"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store->Put(std::string(81, ':'), "v"),  // 243 bytes once escaped.
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store->Get(std::string(241, 'k')), StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---------------------------------------------------------------------------- RedisKvStore

class RedisKvStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_THAT(server_.StartOnFreePort(), IsOk()); }

  RedisOptions Options(std::string namespace_prefix = "serve:test:") const {
    RedisOptions options;
    options.port = server_.port();
    options.namespace_prefix = std::move(namespace_prefix);
    return options;
  }

  RedisServer server_;
};

TEST_F(RedisKvStoreTest, NamespacesIsolateStoresOnOneServer) {
  ASSERT_OK_AND_ASSIGN(a, RedisKvStore::Create(Options("serve:a:")));
  ASSERT_OK_AND_ASSIGN(b, RedisKvStore::Create(Options("serve:b:")));
  ASSERT_THAT(a->Put("k", "from a"), IsOk());
  ASSERT_THAT(b->Put("k", "from b"), IsOk());
  ASSERT_THAT(a->Put("only-a", "x"), IsOk());
  EXPECT_EQ(*a->Get("k"), "from a");
  EXPECT_EQ(*b->Get("k"), "from b");
  EXPECT_THAT(b->Get("only-a"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(*a->Keys(""), ElementsAre("k", "only-a"));
  EXPECT_THAT(*b->Keys(""), ElementsAre("k"));
  ASSERT_THAT(b->Delete("k"), IsOk());
  EXPECT_EQ(*a->Get("k"), "from a");

  // On the server the keys carry the prefix.
  ASSERT_OK_AND_ASSIGN(raw, RedisKvStore::Create(Options("")));
  EXPECT_THAT(*raw->Keys(""), ElementsAre("serve:a:k", "serve:a:only-a"));
}

TEST_F(RedisKvStoreTest, NamespacePrefixWithGlobCharactersIsLiteral) {
  ASSERT_OK_AND_ASSIGN(star, RedisKvStore::Create(Options("serve:*:")));
  ASSERT_OK_AND_ASSIGN(other, RedisKvStore::Create(Options("serve:x:")));
  ASSERT_THAT(star->Put("k", "v"), IsOk());
  ASSERT_THAT(other->Put("k", "v"), IsOk());
  EXPECT_THAT(*star->Keys(""), ElementsAre("k"));
  EXPECT_THAT(*other->Keys(""), ElementsAre("k"));
}

TEST_F(RedisKvStoreTest, DatabasesIsolateStores) {
  RedisOptions db1 = Options();
  db1.db = 1;
  ASSERT_OK_AND_ASSIGN(zero, RedisKvStore::Create(Options()));
  ASSERT_OK_AND_ASSIGN(one, RedisKvStore::Create(db1));
  ASSERT_THAT(one->Put("k", "in db 1"), IsOk());
  EXPECT_THAT(zero->Get("k"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(*one->Get("k"), "in db 1");
}

TEST_F(RedisKvStoreTest, CreateAgainstAClosedPortIsUnavailableQuickly) {
  RedisOptions options;
  options.port = PickFreePort();  // Nothing listens there.
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<RedisKvStore>> store = RedisKvStore::Create(options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(store, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("127.0.0.1:" + std::to_string(options.port)));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("Connection refused"));
  EXPECT_LT(elapsed, std::chrono::seconds(3));
}

TEST_F(RedisKvStoreTest, CreateRejectsBadOptions) {
  RedisOptions bad_port = Options();
  bad_port.port = 0;
  EXPECT_THAT(RedisKvStore::Create(bad_port), StatusIs(absl::StatusCode::kInvalidArgument));
  RedisOptions bad_db = Options();
  bad_db.db = -1;
  EXPECT_THAT(RedisKvStore::Create(bad_db), StatusIs(absl::StatusCode::kInvalidArgument));
  RedisOptions bad_timeout = Options();
  bad_timeout.timeout = std::chrono::milliseconds(0);
  EXPECT_THAT(RedisKvStore::Create(bad_timeout), StatusIs(absl::StatusCode::kInvalidArgument));
  RedisOptions bad_host = Options();
  bad_host.host = "";
  EXPECT_THAT(RedisKvStore::Create(bad_host), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RedisKvStoreTest, ReconnectsTransparentlyAfterAServerRestart) {
  ASSERT_OK_AND_ASSIGN(store, RedisKvStore::Create(Options()));
  ASSERT_THAT(store->Put("before", "v"), IsOk());

  // Restart with no call in between: the first call afterwards finds the old connection
  // closed and must reconnect by itself. (No persistence: the old data is gone.)
  server_.Stop();
  ASSERT_THAT(server_.Start(server_.port()), IsOk());
  EXPECT_THAT(store->Put("after", "v1"), IsOk());
  EXPECT_EQ(*store->Get("after"), "v1");
  EXPECT_THAT(store->Get("before"), StatusIs(absl::StatusCode::kNotFound));

  // Calls while the server is down fail fast with the address; the same object recovers.
  server_.Stop();
  const auto start = std::chrono::steady_clock::now();
  absl::Status down = store->Put("during", "v");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_THAT(down, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(down.message()), HasSubstr(store->address()));
  EXPECT_THAT(store->Keys(""), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_THAT(server_.Start(server_.port()), IsOk());
  EXPECT_THAT(store->Put("recovered", "v2"), IsOk());
  EXPECT_EQ(*store->Get("recovered"), "v2");
  EXPECT_THAT(*store->Keys(""), ElementsAre("recovered"));
}

TEST_F(RedisKvStoreTest, AHungServerTimesOutAndTheStoreRecovers) {
  RedisOptions options = Options();
  options.timeout = std::chrono::milliseconds(300);
  ASSERT_OK_AND_ASSIGN(store, RedisKvStore::Create(options));
  ASSERT_THAT(store->Put("k", "v"), IsOk());

  server_.Pause();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> got = store->Get("k");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  server_.Resume();
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("timed out"));
  EXPECT_LT(elapsed, std::chrono::seconds(2));

  EXPECT_EQ(*store->Get("k"), "v");
}

TEST_F(RedisKvStoreTest, WrongOrMissingPasswordIsAClearError) {
  RedisServer secured;
  ASSERT_THAT(secured.StartOnFreePort({"--requirepass", "s3cret"}), IsOk());
  RedisOptions options = Options();
  options.port = secured.port();
  const std::string address = "127.0.0.1:" + std::to_string(secured.port());

  options.password = "wrong";
  absl::StatusOr<std::unique_ptr<RedisKvStore>> wrong = RedisKvStore::Create(options);
  EXPECT_THAT(wrong, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr(address));
  EXPECT_THAT(std::string(wrong.status().message()), HasSubstr("AUTH"));

  options.password.reset();
  absl::StatusOr<std::unique_ptr<RedisKvStore>> missing = RedisKvStore::Create(options);
  EXPECT_THAT(missing, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("NOAUTH"));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("requires a password"));

  options.password = "s3cret";
  options.db = 2;
  ASSERT_OK_AND_ASSIGN(store, RedisKvStore::Create(options));
  ASSERT_THAT(store->Put("k", "v"), IsOk());
  // A reconnect authenticates and selects the database again.
  secured.Stop();
  ASSERT_THAT(secured.Start(options.port, {"--requirepass", "s3cret"}), IsOk());
  ASSERT_THAT(store->Put("k", "again"), IsOk());
  EXPECT_EQ(*store->Get("k"), "again");
  RedisOptions db0 = options;
  db0.db = 0;
  ASSERT_OK_AND_ASSIGN(other_db, RedisKvStore::Create(db0));
  EXPECT_THAT(other_db->Get("k"), StatusIs(absl::StatusCode::kNotFound));
}

// ---------------------------------------------------------------------------- ParseRedisAddress

TEST(RedisKvStoreAddressTest, ParsesHostAndPort) {
  ASSERT_OK_AND_ASSIGN(options, ParseRedisAddress("redis.example.com:6380"));
  EXPECT_EQ(options.host, "redis.example.com");
  EXPECT_EQ(options.port, 6380);
  EXPECT_EQ(options.db, 0);
  EXPECT_FALSE(options.password.has_value());
  EXPECT_EQ(options.namespace_prefix, "");
  EXPECT_EQ(options.timeout, std::chrono::seconds(2));
}

TEST(RedisKvStoreAddressTest, ParsesDatabase) {
  ASSERT_OK_AND_ASSIGN(options, ParseRedisAddress("10.0.0.7:7000/3"));
  EXPECT_EQ(options.host, "10.0.0.7");
  EXPECT_EQ(options.port, 7000);
  EXPECT_EQ(options.db, 3);
  ASSERT_OK_AND_ASSIGN(zero, ParseRedisAddress("h:1/0"));
  EXPECT_EQ(zero.db, 0);
  EXPECT_EQ(zero.port, 1);
}

TEST(RedisKvStoreAddressTest, ParsesBracketedIpv6) {
  ASSERT_OK_AND_ASSIGN(options, ParseRedisAddress("[::1]:6379/1"));
  EXPECT_EQ(options.host, "::1");
  EXPECT_EQ(options.port, 6379);
  EXPECT_EQ(options.db, 1);
}

TEST(RedisKvStoreAddressTest, RejectsMalformedAddressesWithAClearMessage) {
  const struct {
    std::string address;
    std::string problem;
  } cases[] = {
      {"", "empty"},
      {"localhost", "missing port"},
      {"localhost:", "missing port"},
      {"localhost:/1", "missing port"},
      {":6379", "missing host"},
      {"localhost:abc", "bad port 'abc'"},
      {"localhost:0", "bad port '0'"},
      {"localhost:65536", "bad port '65536'"},
      {"localhost:-1", "bad port '-1'"},
      {"localhost:+80", "bad port '+80'"},
      {"localhost:123456", "bad port '123456'"},
      {"localhost:6379/", "bad db ''"},
      {"localhost:6379/x", "bad db 'x'"},
      {"localhost:6379/-1", "bad db '-1'"},
      {"localhost:6379/1/2", "bad db '1/2'"},
      {"::1:6379", "brackets"},
      {"[::1]6379", "missing port"},
      {"[::1", "missing ']'"},
      {"[]:6379", "missing host"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<RedisOptions> options = ParseRedisAddress(c.address);
    EXPECT_THAT(options, StatusIs(absl::StatusCode::kInvalidArgument)) << c.address;
    EXPECT_THAT(std::string(options.status().message()), HasSubstr(c.problem)) << c.address;
    EXPECT_THAT(std::string(options.status().message()), HasSubstr("'" + c.address + "'"))
        << c.address;
  }
}

}  // namespace
}  // namespace serve::controller

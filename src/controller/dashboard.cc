#include "controller/dashboard.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/util.h"

namespace serve::controller {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxStaticBytes = 8 << 20;
constexpr size_t kDefaultLogLines = 200;
constexpr size_t kMaxLogLines = 10000;
constexpr size_t kMaxLogBytes = 1 << 20;

// Content types of the files the page is made of; other extensions are not served.
std::optional<std::string> ContentType(const std::string& path) {
  static constexpr std::array<std::pair<const char*, const char*>, 9> kTypes = {{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
  }};
  std::string ext = fs::path(path).extension().string();
  for (auto& [e, type] : kTypes) {
    if (ext == e) return type;
  }
  return std::nullopt;
}

// A relative path made of segments of [A-Za-z0-9_.-] that do not start with '.' (so no "..",
// ".", hidden files, percent escapes or backslashes).
bool SafeRelativePath(const std::string& rel) {
  if (rel.empty() || rel.size() > 256) return false;
  size_t start = 0;
  while (start <= rel.size()) {
    size_t slash = rel.find('/', start);
    std::string seg = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg.empty() || seg[0] == '.') return false;
    for (char c : seg) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.';
      if (!ok) return false;
    }
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return true;
}

// Whether `path` resolves (symlinks followed) to an entry strictly inside `dir`.
bool ResolvesInside(const std::string& dir, const std::string& path, fs::path* resolved) {
  std::error_code ec;
  fs::path root = fs::canonical(dir, ec);
  if (ec) return false;
  fs::path p = fs::canonical(path, ec);
  if (ec) return false;
  auto [r, _] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
  if (r != root.end() || p == root) return false;
  *resolved = p;
  return true;
}

rpc::HttpServerResponse ServeFile(const DashboardOptions& o, const std::string& rel) {
  if (o.web_dir.empty()) {
    return Reply(404,
                 "The dashboard's files were not found: install serve (share/serve/web) or set "
                 "SERVE_WEB_DIR.");
  }
  auto type = ContentType(rel);
  fs::path file;
  std::error_code ec;
  if (!type || !SafeRelativePath(rel) || !ResolvesInside(o.web_dir, o.web_dir + "/" + rel, &file) ||
      !fs::is_regular_file(file, ec) || fs::file_size(file, ec) > kMaxStaticBytes) {
    return Reply(404, "Not found: " + rel);
  }
  auto body = ReadFile(file.string());
  if (!body) return Reply(404, "Not found: " + rel);
  rpc::HttpServerResponse r = Reply(200, std::move(*body), *type);
  r.headers.emplace_back("cache-control", "no-cache");
  r.headers.emplace_back("x-content-type-options", "nosniff");
  return r;
}

// The log file the controller knows for `replica_id`, "" when no replica has that id.
std::string ReplicaLogFile(ControllerApi& api, const std::string& replica_id) {
  nlohmann::json details = api.Details("");
  for (auto& app : details["applications"]) {
    for (auto& dep : app["deployments"]) {
      for (auto& r : dep["replicas"]) {
        if (r.value("replica_id", "") == replica_id) return r.value("log_file_path", "");
      }
    }
  }
  return "";
}

rpc::HttpServerResponse ReplicaLogs(const DashboardOptions& o, ControllerApi& api,
                                    const std::string& replica_id, const std::string& query) {
  size_t lines = kDefaultLogLines;
  if (std::string n = QueryParam(query, "lines"); !n.empty()) {
    auto [end, err] = std::from_chars(n.data(), n.data() + n.size(), lines);
    if (err != std::errc() || end != n.data() + n.size() || lines < 1 || lines > kMaxLogLines) {
      return Reply(400, "Invalid 'lines' value: '" + n + "'. Must be an integer from 1 to " +
                            std::to_string(kMaxLogLines) + ".");
    }
  }
  std::string log = replica_id.empty() ? "" : ReplicaLogFile(api, replica_id);
  if (log.empty()) return Reply(404, "Replica '" + replica_id + "' does not exist.");
  fs::path file;
  if (!ResolvesInside(o.logs_dir, log, &file)) {
    return Reply(404, "No log file for replica '" + replica_id + "' in this session's logs.");
  }
  auto tail = TailFile(file.string(), lines, kMaxLogBytes);
  if (!tail) return Reply(404, "Cannot read the log of replica '" + replica_id + "'.");
  rpc::HttpServerResponse r = Reply(200, std::move(*tail));
  r.headers.emplace_back("x-content-type-options", "nosniff");
  return r;
}

}  // namespace

std::string FindWebDir() {
  std::string dir = EnvString("SERVE_WEB_DIR", "");
  if (dir.empty()) dir = SelfExeDir() + "/../share/serve/web";
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/serve/index.html", ec)) return "";
  return fs::canonical(dir, ec).string();
}

std::optional<std::string> TailFile(const std::string& path, size_t max_lines, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  if (size < 0) return std::nullopt;
  std::streamoff start = std::max<std::streamoff>(0, size - static_cast<std::streamoff>(max_bytes));
  in.seekg(start);
  std::string text(static_cast<size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (start > 0) {  // drop the partial first line
    auto nl = text.find('\n');
    text.erase(0, nl == std::string::npos ? text.size() : nl + 1);
  }
  // Walk back over `max_lines` line ends (a final '\n' ends the last line, not a new one).
  size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (size_t n = 0; n < max_lines && pos > 0; ++n) {
    auto nl = text.rfind('\n', pos - 1);
    pos = nl == std::string::npos ? 0 : nl;
    if (nl == std::string::npos) break;
  }
  if (pos > 0) text.erase(0, pos + 1);
  return text;
}

std::optional<rpc::HttpServerResponse> HandleDashboard(const DashboardOptions& options,
                                                       ControllerApi& api,
                                                       const rpc::HttpServerRequest& req) {
  std::string path = req.target, query;
  if (auto q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path.resize(q);
  }
  static const std::string kStatic = "/static/", kReplicas = "/api/serve/replicas/",
                           kLogs = "/logs";
  bool page = path == "/" || path == "/serve" || path == "/serve/";
  bool file = path.rfind(kStatic, 0) == 0;
  bool logs = path.rfind(kReplicas, 0) == 0 && path.size() >= kReplicas.size() + kLogs.size() &&
              path.compare(path.size() - kLogs.size(), kLogs.size(), kLogs) == 0;
  if (!page && !file && !logs) return std::nullopt;
  if (req.method != "GET" && req.method != "HEAD") {
    return Reply(405, "Method " + req.method + " not allowed.");
  }
  if (page) return ServeFile(options, "serve/index.html");
  if (file) return ServeFile(options, path.substr(kStatic.size()));
  std::string id = path.substr(kReplicas.size(), path.size() - kReplicas.size() - kLogs.size());
  return ReplicaLogs(options, api, id, query);
}

}  // namespace serve::controller

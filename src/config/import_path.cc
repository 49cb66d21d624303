#include "config/import_path.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/util.h"

namespace serve::config {
namespace fs = std::filesystem;

absl::StatusOr<ImportPath> ParseImportPath(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError("import_path '" + text + "' is invalid: " + why);
  };
  if (text.empty()) return bad("it is empty");
  size_t colons = std::count(text.begin(), text.end(), ':');
  if (colons > 1) return bad("it may contain at most one ':'");
  size_t sep = colons == 1 ? text.find(':') : text.rfind('.');
  if (sep == std::string::npos) {
    return bad("it must be of the form 'module:app' or 'module.app'");
  }
  if (sep == 0 || sep + 1 == text.size()) {
    return bad("it must not start or end with the separator");
  }
  return ImportPath{text.substr(0, sep), text.substr(sep + 1)};
}

std::vector<std::string> LibrarySearchPath(const std::string& app_dir) {
  std::vector<std::string> dirs;
  dirs.push_back(app_dir.empty() ? "." : app_dir);
  std::string env = EnvString("SERVE_APP_PATH", "");
  for (auto part : absl::StrSplit(env, ':', absl::SkipEmpty())) dirs.emplace_back(part);
  return dirs;
}

absl::StatusOr<std::string> ResolveLibrary(const std::string& module, const std::string& app_dir) {
  // Ray-style dotted modules map to directories: a.b -> a/b.
  std::string rel = module;
  std::replace(rel.begin(), rel.end(), '.', '/');
  fs::path rel_path(rel);
  std::string stem = rel_path.filename().string();
  fs::path parent = rel_path.parent_path();
  std::vector<std::string> tried;
  for (const auto& dir : LibrarySearchPath(app_dir)) {
    for (const std::string& name : {"lib" + stem + ".so", stem + ".so"}) {
      fs::path candidate = fs::path(dir) / parent / name;
      std::error_code ec;
      if (fs::is_regular_file(candidate, ec)) return fs::absolute(candidate).lexically_normal().string();
    }
    tried.push_back(fs::absolute(dir).lexically_normal().string());
  }
  return absl::NotFoundError("Failed to import module '" + module + "': no lib" + stem +
                             ".so or " + stem + ".so in " + absl::StrJoin(tried, ", ") +
                             " (set --app-dir or SERVE_APP_PATH)");
}

}  // namespace serve::config

#include "config/logging_config.h"

#include <cstdlib>
#include <string>

#include "config/deployment_schema.h"
#include "config/validator.h"

namespace serve::config {

using json = nlohmann::json;

absl::StatusOr<json> ValidateLoggingConfig(const json& in, const std::string& path,
                                           bool fill_defaults) {
  ParseOptions options;
  detail::Validator v(nullptr, options);
  return detail::ValidateLoggingConfig(v, path, in, fill_defaults);
}

json DefaultLoggingConfig() { return detail::DefaultLoggingConfig(); }

json ResolveLoggingConfig(const std::optional<json>& deployment,
                          const std::optional<json>& application,
                          const std::optional<json>& global) {
  json chosen = json::object();
  for (const auto* level : {&deployment, &application, &global}) {
    if (*level && level->value().is_object()) {
      chosen = level->value();
      break;
    }
  }
  json out = DefaultLoggingConfig();
  for (auto it = chosen.begin(); it != chosen.end(); ++it) {
    if (out.contains(it.key()) && (!it.value().is_null() || it.key() == "logs_dir")) {
      out[it.key()] = it.value();
    }
  }
  return out;
}

}  // namespace serve::config

// Fuzzes the config parser (config/schema.h): YAML/JSON text to JSON, and to a validated
// ServeDeployConfig. Checks: parsing never crashes; a parsed document written back as YAML
// reads back as the same JSON; a valid config, written as JSON (ToJson), parses again to the
// same JSON.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "config/schema.h"
#include "fuzz_check.h"


extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<nlohmann::json> doc = serve::config::YamlToJson(text);
  if (doc.ok()) {
    absl::StatusOr<nlohmann::json> again = serve::config::YamlToJson(serve::config::JsonToYaml(*doc));
    CHECK(again.ok() && *again == *doc);
  }
  std::vector<std::string> warnings;
  auto config = serve::config::ParseServeDeployConfig(text, {.strict = (size & 1) != 0,
                                                             .warnings = &warnings});
  CHECK(!config.ok() || doc.ok());  // a valid config is a valid document
  if (config.ok()) {
    nlohmann::json as_json = serve::config::ToJson(*config);
    auto reparsed = serve::config::ParseServeDeployConfig(as_json);
    CHECK(reparsed.ok() && serve::config::ToJson(*reparsed) == as_json);
  }
  return 0;
}

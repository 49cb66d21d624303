#include "config/document_schema.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "config/deployment_schema.h"
#include "config/validator.h"

namespace serve::config::detail {
namespace {

using json = nlohmann::json;

absl::Status ValidateImportPath(const Validator& v, const std::string& path,
                                const std::string& ip) {
  auto bad = [&](const std::string& why) {
    return v.Error(path, absl::StrCat("invalid import path \"", ip, "\": ", why));
  };
  size_t colons = std::count(ip.begin(), ip.end(), ':');
  if (colons > 1) return bad("an import path may have at most one colon");
  if (colons == 1) {
    size_t pos = ip.find(':');
    if (pos == 0 || pos + 1 == ip.size()) {
      return bad("an import path may not start or end with a colon");
    }
    return absl::OkStatus();
  }
  size_t dot = ip.rfind('.');
  if (dot == std::string::npos) {
    return bad(
        "an import path must contain at least one dot or colon separating the module from "
        "the application, e.g. \"module:app\"");
  }
  if (dot == 0 || dot + 1 == ip.size()) {
    return bad("an import path may not start or end with a dot");
  }
  return absl::OkStatus();
}

absl::Status ValidateRoutePrefix(const Validator& v, const std::string& path,
                                 const std::string& prefix) {
  if (prefix.empty() || prefix[0] != '/') {
    return v.Error(path, absl::StrCat("got \"", prefix, "\"; route prefix must start with \"/\""));
  }
  if (prefix.size() > 1 && prefix.back() == '/') {
    return v.Error(path, absl::StrCat("got \"", prefix,
                                      "\"; route prefix cannot end with \"/\" unless the "
                                      "entire prefix is just \"/\""));
  }
  if (prefix.find_first_of("{}") != std::string::npos) {
    return v.Error(path, absl::StrCat("got \"", prefix,
                                      "\"; route prefix cannot contain wildcards, so it cannot "
                                      "contain \"{\" or \"}\""));
  }
  return absl::OkStatus();
}

/// Legacy single-application fields (ServeApplicationSchema) found at the top level.
const std::set<std::string>& LegacyAppFields() {
  static const std::set<std::string> kFields(ApplicationFieldOrder().begin(),
                                             ApplicationFieldOrder().end());
  return kFields;
}

/// One ServeApplicationSchema at `prefix` ("applications[0]", or "" for the legacy top-level
/// form). `multi_app` rejects host/port.
absl::StatusOr<ApplicationConfig> ParseApplication(const Validator& v, const std::string& prefix,
                                                   const json& in, bool multi_app) {
  if (auto st = v.Mapping(prefix, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(prefix, key); };
  if (multi_app) {
    std::set<std::string> known = LegacyAppFields();
    known.insert({"host", "port"});  // rejected below with their own message
    if (auto st = v.UnknownKeys(prefix, in, known); !st.ok()) return st;
  }
  ApplicationConfig app;
  if (auto it = in.find("name"); it != in.end()) {
    auto name = NameField(v, P("name"), *it);
    if (!name.ok()) return name.status();
    // Empty names get their own message with the cross-application checks.
    if (!name->empty()) {
      if (auto st = v.PathName(P("name"), *name); !st.ok()) return st;
    }
    app.name = *name;
  }
  if (multi_app) {
    if (auto it = in.find("host"); it != in.end()) {
      return v.Error(P("host"), absl::StrCat("host ", Show(*it),
                                             " is set in the config for application \"", app.name,
                                             "\"; remove it and set http_options.host in the "
                                             "top-level config only"));
    }
    if (auto it = in.find("port"); it != in.end()) {
      return v.Error(P("port"), absl::StrCat("port ", Show(*it),
                                             " is set in the config for application \"", app.name,
                                             "\"; remove it and set http_options.port in the "
                                             "top-level config only"));
    }
  }
  if (auto it = in.find("route_prefix"); it != in.end()) {
    if (it->is_null()) {
      app.route_prefix = std::nullopt;
    } else {
      auto rp = v.String(P("route_prefix"), *it);
      if (!rp.ok()) return rp.status();
      if (auto st = ValidateRoutePrefix(v, P("route_prefix"), *rp); !st.ok()) return st;
      app.route_prefix = *rp;
    }
  }
  auto ip_it = in.find("import_path");
  if (ip_it == in.end() || ip_it->is_null()) return v.Error(P("import_path"), "field required");
  auto ip = v.String(P("import_path"), *ip_it);
  if (!ip.ok()) return ip.status();
  if (auto st = ValidateImportPath(v, P("import_path"), *ip); !st.ok()) return st;
  app.import_path = *ip;
  if (auto it = in.find("runtime_env"); it != in.end()) {
    if (auto st = ValidateRuntimeEnv(v, P("runtime_env"), *it); !st.ok()) return st;
    app.runtime_env = *it;
  }
  if (auto it = in.find("args"); it != in.end()) {
    if (auto st = v.Mapping(P("args"), *it); !st.ok()) return st;
    app.args = *it;
  }
  if (auto it = in.find("logging_config"); it != in.end() && !it->is_null()) {
    auto lc = ValidateLoggingConfig(v, P("logging_config"), *it, /*fill_defaults=*/true);
    if (!lc.ok()) return lc.status();
    app.logging_config = *lc;
  }
  if (auto it = in.find("external_scaler_enabled"); it != in.end()) {
    if (!it->is_boolean()) return v.TypeError(P("external_scaler_enabled"), "a boolean", *it);
    app.external_scaler_enabled = it->get<bool>();
  }
  if (auto it = in.find("autoscaling_policy"); it != in.end()) {
    if (auto st = v.MappingOrNull(P("autoscaling_policy"), *it); !st.ok()) return st;
  }
  if (auto it = in.find("deployments"); it != in.end()) {
    if (!it->is_array()) return v.TypeError(P("deployments"), "a list of mappings", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      std::string dp = Index(P("deployments"), i);
      auto d = ParseDeployment(v, dp, (*it)[i]);
      if (!d.ok()) return d.status();
      if (app.external_scaler_enabled && ConfiguresAutoscaling(*d)) {
        return v.Error(dp, absl::StrCat("deployment \"", d->name,
                                        "\" configures autoscaling, which is not allowed when "
                                        "external_scaler_enabled is true"));
      }
      app.deployments.push_back(std::move(*d));
    }
  }
  app.submitted = in;
  return app;
}

absl::StatusOr<HttpOptions> ParseHttpOptions(const Validator& v, const std::string& path,
                                             const json& in) {
  HttpOptions h;
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(path, key); };
  // Unknown fields are ignored (forward-compatible, as in Ray), with a warning.
  static const std::set<std::string> kKnown = {
      "host", "port", "root_path", "request_timeout_s", "keep_alive_timeout_s", "ssl_keyfile",
      "ssl_certfile", "ssl_keyfile_password", "ssl_ca_certs"};
  if (auto st = v.UnknownKeys(path, in, kKnown); !st.ok()) return st;
  if (auto it = in.find("host"); it != in.end()) {
    auto s = v.String(P("host"), *it);
    if (!s.ok()) return s.status();
    h.host = *s;
  }
  if (auto it = in.find("port"); it != in.end()) {
    auto port = v.Port(P("port"), *it);
    if (!port.ok()) return port.status();
    h.port = *port;
  }
  if (auto it = in.find("root_path"); it != in.end()) {
    auto s = v.String(P("root_path"), *it);
    if (!s.ok()) return s.status();
    h.root_path = *s;
  }
  if (auto it = in.find("request_timeout_s"); it != in.end() && !it->is_null()) {
    if (auto st = v.InRange(P("request_timeout_s"), *it, "request_timeout_s"); !st.ok()) return st;
    h.request_timeout_s = it->get<double>();
  }
  if (auto it = in.find("keep_alive_timeout_s"); it != in.end()) {
    if (auto st = v.InRange(P("keep_alive_timeout_s"), *it, "keep_alive_timeout_s"); !st.ok()) {
      return st;
    }
    h.keep_alive_timeout_s = it->get<double>();
  }
  struct OptField {
    const char* name;
    std::optional<std::string>* out;
  };
  for (OptField fld :
       {OptField{"ssl_keyfile", &h.ssl_keyfile}, OptField{"ssl_certfile", &h.ssl_certfile},
        OptField{"ssl_keyfile_password", &h.ssl_keyfile_password},
        OptField{"ssl_ca_certs", &h.ssl_ca_certs}}) {
    auto it = in.find(fld.name);
    if (it == in.end() || it->is_null()) continue;
    auto s = v.String(P(fld.name), *it);
    if (!s.ok()) return s.status();
    *fld.out = *s;
  }
  if (h.ssl_keyfile.has_value() != h.ssl_certfile.has_value()) {
    return v.Error(P(h.ssl_keyfile ? "ssl_keyfile" : "ssl_certfile"),
                   "ssl_keyfile and ssl_certfile must be given together");
  }
  return h;
}

absl::StatusOr<GrpcOptions> ParseGrpcOptions(const Validator& v, const std::string& path,
                                             const json& in) {
  GrpcOptions g;
  if (auto st = v.Mapping(path, in); !st.ok()) return st;
  auto P = [&](const std::string& key) { return Join(path, key); };
  static const std::set<std::string> kKnown = {"port", "grpc_servicer_functions",
                                               "request_timeout_s"};
  if (auto st = v.UnknownKeys(path, in, kKnown); !st.ok()) return st;
  if (auto it = in.find("port"); it != in.end()) {
    auto port = v.Port(P("port"), *it);
    if (!port.ok()) return port.status();
    g.port = *port;
  }
  if (auto it = in.find("grpc_servicer_functions"); it != in.end()) {
    if (!it->is_array()) return v.TypeError(P("grpc_servicer_functions"), "a list", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      auto s = v.String(Index(P("grpc_servicer_functions"), i), (*it)[i]);
      if (!s.ok()) return s.status();
      g.grpc_servicer_functions.push_back(*s);
    }
  }
  if (auto it = in.find("request_timeout_s"); it != in.end() && !it->is_null()) {
    if (auto st = v.InRange(P("request_timeout_s"), *it, "request_timeout_s"); !st.ok()) return st;
    g.request_timeout_s = it->get<double>();
  }
  return g;
}

std::string QuotedList(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& s : items) quoted.push_back("\"" + s + "\"");
  return absl::StrJoin(quoted, ", ");
}

}  // namespace

const std::vector<std::string>& ApplicationFieldOrder() {
  static const std::vector<std::string> kOrder = {
      "name",        "route_prefix", "import_path",    "args",
      "runtime_env", "deployments",  "logging_config", "external_scaler_enabled",
      "autoscaling_policy"};
  return kOrder;
}

absl::StatusOr<ServeDeployConfig> ParseDocument(const json& doc, const LineMap* lines,
                                                 const ParseOptions& options) {
  Validator v(lines, options);
  if (!doc.is_object()) return v.TypeError("", "a mapping", doc);
  // Documents parsed elsewhere (REST bodies, checkpoints) get the same depth bound as files.
  if (std::string why = limits::CheckNesting(doc); !why.empty()) return v.Error("", why);
  ServeDeployConfig config;

  bool legacy = !doc.contains("applications") && doc.contains("import_path");
  {
    std::set<std::string> known = {"proxy_location", "http_options", "grpc_options",
                                   "logging_config", "applications", "target_capacity"};
    if (legacy) {
      known.insert(LegacyAppFields().begin(), LegacyAppFields().end());
      known.insert({"host", "port"});
    }
    if (auto st = v.UnknownKeys("", doc, known); !st.ok()) return st;
  }

  if (auto it = doc.find("proxy_location"); it != doc.end()) {
    if (!it->is_string() || (*it != "Disabled" && *it != "HeadOnly" && *it != "EveryNode")) {
      return v.Error("proxy_location", absl::StrCat("must be one of Disabled, HeadOnly, "
                                                    "EveryNode (got ",
                                                    Show(*it), ")"));
    }
    config.proxy_location = it->get<std::string>();
  }
  if (auto it = doc.find("http_options"); it != doc.end()) {
    auto h = ParseHttpOptions(v, "http_options", *it);
    if (!h.ok()) return h.status();
    config.http_options = *h;
  }
  if (auto it = doc.find("grpc_options"); it != doc.end()) {
    auto g = ParseGrpcOptions(v, "grpc_options", *it);
    if (!g.ok()) return g.status();
    config.grpc_options = *g;
  }
  if (auto it = doc.find("target_capacity"); it != doc.end() && !it->is_null()) {
    auto tc = v.Number("target_capacity", *it);
    if (!tc.ok()) return tc.status();
    if (!limits::CheckRange(*it, *limits::FieldRange("target_capacity")).empty()) {
      return v.Error("target_capacity",
                     absl::StrCat("must be between 0 and 100 or null (got ", it->dump(), ")"));
    }
    config.target_capacity = *tc;
  }

  if (legacy) {
    // Seed "Migrating from a single-application config": the whole document is the one
    // application; host/port move under http_options.
    json app_doc = json::object();
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (LegacyAppFields().count(it.key())) app_doc[it.key()] = it.value();
    }
    auto app = ParseApplication(v, "", app_doc, /*multi_app=*/false);
    if (!app.ok()) return app.status();
    if (auto it = doc.find("host"); it != doc.end()) {
      auto s = v.String("host", *it);
      if (!s.ok()) return s.status();
      config.http_options.host = *s;
    }
    if (auto it = doc.find("port"); it != doc.end()) {
      auto port = v.Port("port", *it);
      if (!port.ok()) return port.status();
      config.http_options.port = *port;
    }
    config.applications.push_back(std::move(*app));
  } else {
    auto it = doc.find("applications");
    if (it == doc.end()) return v.Error("applications", "field required");
    if (!it->is_array()) return v.TypeError("applications", "a list of mappings", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      auto app = ParseApplication(v, Index("applications", i), (*it)[i], /*multi_app=*/true);
      if (!app.ok()) return app.status();
      config.applications.push_back(std::move(*app));
    }
    // The top-level logging_config (the legacy form's belongs to its application).
    if (auto lc = doc.find("logging_config"); lc != doc.end() && !lc->is_null()) {
      auto parsed = ValidateLoggingConfig(v, "logging_config", *lc, /*fill_defaults=*/true);
      if (!parsed.ok()) return parsed.status();
      config.logging_config = *parsed;
    }
  }

  // Cross-application rules (ServeDeploySchema validators).
  const std::string apps_path = legacy ? std::string() : std::string("applications");
  std::map<std::string, int> name_count;
  std::vector<std::string> dup_names;
  std::map<std::string, int> prefix_count;
  std::vector<std::string> dup_prefixes;
  for (size_t i = 0; i < config.applications.size(); ++i) {
    const ApplicationConfig& app = config.applications[i];
    if (app.name.empty()) {
      return v.Error(legacy ? "name" : Join(Index("applications", i), "name"),
                     "application names must be nonempty");
    }
    if (++name_count[app.name] == 2) dup_names.push_back(app.name);
    if (app.route_prefix && ++prefix_count[*app.route_prefix] == 2) {
      dup_prefixes.push_back(*app.route_prefix);
    }
  }
  if (!dup_names.empty()) {
    return v.Error(apps_path,
                   absl::StrCat("found multiple configs for ",
                                dup_names.size() == 1 ? "application " : "applications ",
                                QuotedList(dup_names), "; please remove all duplicates"));
  }
  if (!dup_prefixes.empty()) {
    return v.Error(apps_path,
                   absl::StrCat("found duplicate applications for ",
                                dup_prefixes.size() == 1 ? "route prefix " : "route prefixes ",
                                QuotedList(dup_prefixes),
                                "; please ensure each application's route_prefix is unique"));
  }
  return config;
}

}  // namespace serve::config::detail

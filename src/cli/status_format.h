#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace serve::cli {

/// `serve status` YAML (spec §3.5) from ServeInstanceDetails JSON. With `app_name` set, only
/// that application's sub-document, or `Application "<name>" does not exist.`
std::string FormatStatus(const nlohmann::json& details, const std::string& app_name = "");

}  // namespace serve::cli

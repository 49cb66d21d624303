#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace serve {

/// Any JSON value; the SDK's dynamic value type (user_config, JSON bodies, JSON returns).
using Json = nlohmann::json;

/// Raw bytes. Crosses process boundaries as binary (not as an array of numbers).
struct Bytes {
  std::vector<std::uint8_t> data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};
inline void to_json(Json& j, const Bytes& b) { j = Json::binary(b.data); }
inline void from_json(const Json& j, Bytes& b) {
  if (j.is_binary()) {
    b.data = j.get_binary();
  } else if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    b.data.assign(s.begin(), s.end());
  } else {
    throw nlohmann::json::type_error::create(302, "expected bytes", &j);
  }
}

}  // namespace serve

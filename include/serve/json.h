#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>
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

namespace detail {
/// `j.get<T>()` for the SDK's typed arguments and results, except that a floating-point value
/// an arithmetic T cannot hold (NaN, or out of T's range after truncation toward zero) throws
/// nlohmann::json::type_error 302 instead of converting (undefined behaviour in C++).
template <class T>
T FromJson(const Json& j) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    if (j.is_number_float()) {
      double v = j.get_ref<const double&>();
      bool fits;
      if constexpr (std::is_integral_v<T>) {
        double t = std::trunc(v);
        double limit = std::ldexp(1.0, std::numeric_limits<T>::digits);  // 2^bits (no sign)
        fits = t < limit && t >= (std::is_signed_v<T> ? -limit : 0.0);  // false for NaN
      } else {
        fits = !std::isfinite(v) || std::fabs(v) <= double{std::numeric_limits<T>::max()};
      }
      if (!fits) {
        char text[32];
        std::snprintf(text, sizeof(text), "%g", v);
        throw Json::type_error::create(
            302, std::string("number ") + text + " does not fit the parameter's type", &j);
      }
    }
  }
  return j.get<T>();
}
}  // namespace detail

}  // namespace serve

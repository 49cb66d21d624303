#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
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

template <class T>
struct IsPairOrTuple : std::false_type {};
template <class A, class B>
struct IsPairOrTuple<std::pair<A, B>> : std::true_type {};
template <class... A>
struct IsPairOrTuple<std::tuple<A...>> : std::true_type {};

/// Throws nlohmann::json::type_error 302 where `j.get<T>()` would convert a floating-point
/// value to an arithmetic type that cannot hold it (NaN, or out of range after truncation
/// toward zero: undefined behaviour in C++). Looks inside the standard containers, pair and
/// tuple; a user type's own from_json is not checked.
template <class T>
void CheckNumbersFit(const Json& j) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    if (!j.is_number_float()) return;
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
  } else if constexpr (IsPairOrTuple<T>::value) {
    if (!j.is_array() || j.size() != std::tuple_size_v<T>) return;  // get<T>() reports it
    [&]<size_t... I>(std::index_sequence<I...>) {
      (CheckNumbersFit<std::tuple_element_t<I, T>>(j[I]), ...);
    }(std::make_index_sequence<std::tuple_size_v<T>>{});
  } else if constexpr (requires { typename T::key_type; typename T::mapped_type; }) {
    if (j.is_object()) {
      for (const auto& v : j) CheckNumbersFit<typename T::mapped_type>(v);
    } else if (j.is_array()) {  // a map with non-string keys: [[key, value], ...]
      for (const auto& kv : j) {
        CheckNumbersFit<std::pair<typename T::key_type, typename T::mapped_type>>(kv);
      }
    }
  } else if constexpr (requires { typename T::value_type; } && !std::is_same_v<T, std::string> &&
                       !std::is_same_v<T, Json>) {
    if (!j.is_array()) return;
    for (const auto& v : j) CheckNumbersFit<typename T::value_type>(v);
  }
}

/// `j.get<T>()` for the SDK's typed arguments and results, except that a floating-point value
/// that T (or a number inside it: CheckNumbersFit) cannot hold throws
/// nlohmann::json::type_error 302 instead of converting with undefined behaviour.
template <class T>
T FromJson(const Json& j) {
  CheckNumbersFit<T>(j);
  return j.get<T>();
}
}  // namespace detail

}  // namespace serve

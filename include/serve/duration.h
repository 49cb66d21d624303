#pragma once

#include <chrono>

namespace serve {

/// A span of time in the public API (timeouts, periods, delays): a std::chrono duration with a
/// double count of seconds. Set it from any std::chrono duration (`std::chrono::seconds(5)`,
/// `200ms`) or, the older spelling, from a number of seconds (`5.0`).
class Duration : public std::chrono::duration<double> {
  using Base = std::chrono::duration<double>;

 public:
  constexpr Duration() = default;
  /// A number of seconds (the older spelling of the `*_s` options and timeouts).
  constexpr Duration(double seconds) : Base(seconds) {}  // NOLINT: implicit by design
  template <class Rep, class Period>
  constexpr Duration(std::chrono::duration<Rep, Period> d)  // NOLINT: implicit by design
      : Base(std::chrono::duration_cast<Base>(d)) {}
  /// The duration in seconds.
  constexpr double seconds() const { return count(); }
  /// Compares with a number of seconds (the older spelling).
  friend constexpr bool operator==(const Duration& d, double seconds) {
    return d.count() == seconds;
  }
};

}  // namespace serve

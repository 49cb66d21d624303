#pragma once

// Time and randomness the controller's managers are handed, so tests can drive them with a
// fake clock and a deterministic random source.

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

#include "common/util.h"

namespace serve::controller {

class Clock {
 public:
  virtual ~Clock() = default;
  /// Monotonic seconds (timers, delays, deadlines).
  virtual double Now() = 0;
  /// Seconds since the Unix epoch (timestamps shown to users).
  virtual double UnixNow() = 0;
};

class SystemClock final : public Clock {
 public:
  double Now() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  double UnixNow() override { return NowUnixSeconds(); }
};

class Random {
 public:
  virtual ~Random() = default;
  /// Uniform in [lo, hi).
  virtual double Uniform(double lo, double hi) = 0;
  /// A fresh id of `n` characters from [a-z0-9].
  virtual std::string Id(size_t n) = 0;
};

class SystemRandom final : public Random {
 public:
  SystemRandom() : rng_(std::random_device{}()) {}
  double Uniform(double lo, double hi) override {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }
  std::string Id(size_t n) override { return RandomId(n); }

 private:
  std::mt19937_64 rng_;
};

}  // namespace serve::controller

// Unit tests of the default autoscaling policy (spec §6.3): bounds, registration target,
// single decisions, and decision sequences over time (delays).

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "autoscaler/policy.h"
#include "config/deployment_config.h"

namespace serve::autoscaler {
namespace {

using config::AutoscalingConfig;

/// min/max with no delays, so single decisions apply at once.
AutoscalingConfig Immediate(int min_replicas, int max_replicas) {
  AutoscalingConfig c;
  c.min_replicas = min_replicas;
  c.max_replicas = max_replicas;
  c.upscale_delay_s = 0;
  c.downscale_delay_s = 0;
  return c;
}

template <class F>
AutoscalingConfig With(AutoscalingConfig c, F&& tweak) {
  tweak(c);
  return c;
}

// ---- ScalingBounds ------------------------------------------------------------------------

struct BoundsCase {
  std::string name;
  AutoscalingConfig config;
  std::optional<double> target_capacity;
  bool capacity_scaling_up;
  int lower;
  int upper;
};

void PrintTo(const BoundsCase& c, std::ostream* os) { *os << c.name; }

class ScalingBoundsTest : public ::testing::TestWithParam<BoundsCase> {};

TEST_P(ScalingBoundsTest, Bounds) {
  const BoundsCase& c = GetParam();
  Bounds b = ScalingBounds(c.config, c.target_capacity, c.capacity_scaling_up);
  EXPECT_EQ(b.lower, c.lower);
  EXPECT_EQ(b.upper, c.upper);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ScalingBoundsTest,
    ::testing::Values(BoundsCase{"MinMax", Immediate(2, 10), std::nullopt, false, 2, 10},
                      BoundsCase{"FullCapacity", Immediate(2, 10), 100.0, false, 2, 10},
                      BoundsCase{"HalfCapacityRoundsHalfUp", Immediate(3, 9), 50.0, false, 2, 5},
                      BoundsCase{"SmallCapacityKeepsOne", Immediate(1, 10), 1.0, false, 1, 1},
                      BoundsCase{"ZeroCapacity", Immediate(2, 10), 0.0, false, 0, 0},
                      BoundsCase{"ZeroMinStaysZero", Immediate(0, 10), 50.0, false, 0, 5},
                      BoundsCase{"InitialIsLowerWhenScalingUp",
                                 With(Immediate(1, 10), [](auto& c) { c.initial_replicas = 6; }),
                                 50.0, true, 3, 5},
                      BoundsCase{"InitialIgnoredWhenNotScalingUp",
                                 With(Immediate(1, 10), [](auto& c) { c.initial_replicas = 6; }),
                                 50.0, false, 1, 5},
                      BoundsCase{"MinWhenUpWithoutInitial", Immediate(2, 10), 50.0, true, 1, 5}),
    [](const auto& info) { return info.param.name; });

// ---- InitialTarget ------------------------------------------------------------------------

struct InitialCase {
  std::string name;
  AutoscalingConfig config;
  std::optional<int> current;
  bool first_or_initial_changed;
  std::optional<double> target_capacity;
  bool capacity_scaling_up;
  int expected;
};

void PrintTo(const InitialCase& c, std::ostream* os) { *os << c.name; }

class InitialTargetTest : public ::testing::TestWithParam<InitialCase> {};

TEST_P(InitialTargetTest, Target) {
  const InitialCase& c = GetParam();
  EXPECT_EQ(InitialTarget(c.config, c.current, c.first_or_initial_changed, c.target_capacity,
                          c.capacity_scaling_up),
            c.expected);
}

AutoscalingConfig WithInitial(int min_replicas, int initial, int max_replicas) {
  return With(Immediate(min_replicas, max_replicas),
              [&](auto& c) { c.initial_replicas = initial; });
}

INSTANTIATE_TEST_SUITE_P(
    Table, InitialTargetTest,
    ::testing::Values(
        InitialCase{"FirstDeployStartsAtMin", Immediate(2, 10), std::nullopt, true, {}, false, 2},
        InitialCase{"FirstDeployMinZero", Immediate(0, 10), std::nullopt, true, {}, false, 0},
        InitialCase{"FirstDeployInitial", WithInitial(1, 4, 10), std::nullopt, true, {}, false, 4},
        InitialCase{"ChangedInitialWins", WithInitial(1, 4, 10), 7, true, {}, false, 4},
        InitialCase{"UnchangedKeepsCurrent", WithInitial(1, 4, 10), 7, false, {}, false, 7},
        InitialCase{"CurrentClampedToMax", Immediate(1, 10), 50, false, {}, false, 10},
        InitialCase{"CurrentClampedToMin", Immediate(3, 10), 1, false, {}, false, 3},
        InitialCase{"CapacityLimitsInitial", WithInitial(1, 8, 10), std::nullopt, true, 50.0, false,
                    5},
        InitialCase{"CapacityUpUsesAdjustedInitialAsLower", WithInitial(1, 8, 10), 1, false, 50.0,
                    true, 4},
        InitialCase{"ZeroCapacity", WithInitial(1, 8, 10), 5, true, 0.0, false, 0}),
    [](const auto& info) { return info.param.name; });

// ---- DefaultPolicy: single decisions (no delays) ------------------------------------------

struct DecisionCase {
  std::string name;
  AutoscalingConfig config;
  int running;
  int target;
  double total;
  int expected;
  std::optional<double> target_capacity = std::nullopt;
  bool capacity_scaling_up = false;
};

void PrintTo(const DecisionCase& c, std::ostream* os) { *os << c.name; }

class DefaultPolicyDecisionTest : public ::testing::TestWithParam<DecisionCase> {};

TEST_P(DefaultPolicyDecisionTest, Decides) {
  const DecisionCase& c = GetParam();
  PolicyInput in;
  in.now_s = 1000;
  in.running_replicas = c.running;
  in.target_replicas = c.target;
  in.total_requests = c.total;
  in.config = &c.config;
  in.target_capacity = c.target_capacity;
  in.capacity_scaling_up = c.capacity_scaling_up;
  PolicyState state;
  EXPECT_EQ(DefaultPolicy(in, state), c.expected);
}

template <class F>
AutoscalingConfig Tweaked(int min_replicas, int max_replicas, F&& tweak) {
  return With(Immediate(min_replicas, max_replicas), tweak);
}

INSTANTIATE_TEST_SUITE_P(
    Table, DefaultPolicyDecisionTest,
    ::testing::Values(
        // Cold start: R == 0.
        DecisionCase{"ColdStartOne", Immediate(0, 10), 0, 0, 5, 1},
        DecisionCase{"ColdStartUsesUpscalingFactor",
                     Tweaked(0, 10, [](auto& c) { c.upscaling_factor = 2.5; }), 0, 0, 5, 3},
        DecisionCase{"ColdStartKeepsHigherTarget", Immediate(0, 10), 0, 4, 5, 4},
        DecisionCase{"ColdStartNoLoadKeepsTarget", Immediate(0, 10), 0, 0, 0, 0},
        DecisionCase{"ColdStartNoLoadStartingReplicas", Immediate(0, 10), 0, 2, 0, 2},
        DecisionCase{"ColdStartBoundedByMax",
                     Tweaked(0, 2, [](auto& c) { c.upscaling_factor = 5; }), 0, 0, 1, 2},
        DecisionCase{"ColdStartIgnoresDelay",
                     Tweaked(0, 10, [](auto& c) { c.upscale_delay_s = 300; }), 0, 0, 1, 1},
        // desired = total / target_ongoing_requests.
        DecisionCase{"UpToDesired", Immediate(1, 20), 2, 2, 10, 10},
        DecisionCase{"DesiredRoundsUp", Immediate(1, 20), 2, 2, 4.2, 5},
        DecisionCase{"TargetOngoingRequests",
                     Tweaked(1, 20, [](auto& c) { c.target_ongoing_requests = 2; }), 2, 2, 9, 5},
        DecisionCase{"DownToDesired", Immediate(1, 20), 10, 10, 3, 3},
        DecisionCase{"SteadyStays", Immediate(1, 20), 4, 4, 4, 4},
        // Factors.
        DecisionCase{"UpscalingFactor", Tweaked(1, 20, [](auto& c) { c.upscaling_factor = 0.5; }),
                     2, 2, 10, 6},
        DecisionCase{"DownscalingFactor",
                     Tweaked(1, 20, [](auto& c) { c.downscaling_factor = 0.5; }), 10, 10, 2, 6},
        DecisionCase{"UpscalingFactorDoesNotAffectDown",
                     Tweaked(1, 20, [](auto& c) { c.upscaling_factor = 0.5; }), 10, 10, 2, 2},
        DecisionCase{"DeprecatedSmoothingFactor",
                     Tweaked(1, 20, [](auto& c) { c.smoothing_factor = 2; }), 2, 2, 4, 6},
        DecisionCase{"DeprecatedUpscaleSmoothingFactor",
                     Tweaked(1, 20, [](auto& c) { c.upscale_smoothing_factor = 0.5; }), 2, 2, 10,
                     6},
        DecisionCase{"UpscalingFactorWinsOverDeprecated",
                     Tweaked(1, 20,
                             [](auto& c) {
                               c.upscale_smoothing_factor = 0.5;
                               c.upscaling_factor = 0.25;
                             }),
                     2, 2, 10, 4},
        // Stuck-at-R rule: a small downscaling factor still removes one replica.
        DecisionCase{"StuckRuleRemovesOne",
                     Tweaked(1, 20, [](auto& c) { c.downscaling_factor = 0.1; }), 4, 4, 3, 3},
        DecisionCase{"StuckRuleNotWhenCeilDesiredIsR",
                     Tweaked(1, 20, [](auto& c) { c.downscaling_factor = 0.1; }), 4, 4, 3.5, 4},
        // Clamping.
        DecisionCase{"ClampedToMax", Immediate(1, 5), 2, 2, 100, 5},
        DecisionCase{"ClampedToMin", Immediate(2, 5), 4, 4, 0, 2},
        DecisionCase{"InitialIsLowerWhenCapacityScalingUp",
                     Tweaked(1, 10, [](auto& c) { c.initial_replicas = 4; }), 2, 2, 0, 4,
                     std::nullopt, true},
        DecisionCase{"InitialNotLowerOtherwise",
                     Tweaked(1, 10, [](auto& c) { c.initial_replicas = 4; }), 2, 2, 0, 1},
        DecisionCase{"TargetCapacityLimitsMax", Immediate(1, 10), 2, 2, 100, 5, 50.0},
        DecisionCase{"TargetCapacityAdjustsMin", Immediate(3, 10), 4, 4, 0, 2, 50.0},
        DecisionCase{"ZeroTargetCapacity", Immediate(1, 10), 4, 4, 100, 0, 0.0},
        DecisionCase{"TargetAboveMaxBoundedAtOnce",
                     Tweaked(1, 10, [](auto& c) { c.downscale_delay_s = 600; }), 10, 20, 100, 10},
        // Toward zero: a downscale from T > 1 stops at 1; only 1 -> 0 reaches zero.
        DecisionCase{"DownscaleStopsAtOne", Immediate(0, 10), 3, 3, 0, 1},
        DecisionCase{"OneToZero", Immediate(0, 10), 1, 1, 0, 0},
        DecisionCase{"MinOneNeverZero", Immediate(1, 10), 1, 1, 0, 1}),
    [](const auto& info) { return info.param.name; });

// ---- DefaultPolicy over time (delays) -----------------------------------------------------

struct Step {
  double now_s;
  int running;
  double total;
  int expected;  ///< the new target; the next step's T
};

struct SequenceCase {
  std::string name;
  AutoscalingConfig config;
  int initial_target;
  std::vector<Step> steps;
};

void PrintTo(const SequenceCase& c, std::ostream* os) { *os << c.name; }

class DefaultPolicySequenceTest : public ::testing::TestWithParam<SequenceCase> {};

TEST_P(DefaultPolicySequenceTest, Decides) {
  const SequenceCase& c = GetParam();
  PolicyState state;
  int target = c.initial_target;
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& s = c.steps[i];
    PolicyInput in;
    in.now_s = s.now_s;
    in.running_replicas = s.running;
    in.target_replicas = target;
    in.total_requests = s.total;
    in.config = &c.config;
    target = DefaultPolicy(in, state);
    EXPECT_EQ(target, s.expected) << "step " << i << " at t=" << s.now_s;
  }
}

AutoscalingConfig Delays(int min_replicas, int max_replicas, double up_s, double down_s) {
  AutoscalingConfig c;
  c.min_replicas = min_replicas;
  c.max_replicas = max_replicas;
  c.upscale_delay_s = up_s;
  c.downscale_delay_s = down_s;
  return c;
}

AutoscalingConfig ToZeroDelay(double to_zero_s) {
  AutoscalingConfig c = Delays(0, 10, 30, 100);
  c.downscale_to_zero_delay_s = to_zero_s;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Table, DefaultPolicySequenceTest,
    ::testing::Values(
        SequenceCase{
            "UpscaleAfterDelay",
            Delays(1, 10, 30, 600),
            1,
            {{0, 1, 3, 1}, {10, 1, 3, 1}, {29.9, 1, 3, 1}, {30, 1, 3, 3}, {30.1, 1, 3, 3}}},
        SequenceCase{"DefaultDelaysFromConfig",
                     AutoscalingConfig{},  // min 1, max 1: nothing to scale
                     1,
                     {{0, 1, 50, 1}, {100, 1, 50, 1}}},
        SequenceCase{"DelayIsTimeNotCallCount",
                     Delays(1, 10, 30, 600),
                     1,
                     {{100, 1, 5, 1}, {129, 1, 5, 1}, {130, 1, 5, 5}}},
        SequenceCase{"LatestDesiredAppliedAfterUpDelay",
                     Delays(1, 10, 30, 600),
                     1,
                     {{0, 1, 3, 1}, {15, 1, 7, 1}, {30, 1, 4, 4}}},
        SequenceCase{"UpscaleInterruptedByEqualRestarts",
                     Delays(1, 10, 30, 600),
                     1,
                     {{0, 1, 3, 1}, {20, 1, 1, 1}, {25, 1, 3, 1}, {50, 1, 3, 1}, {55, 1, 3, 3}}},
        SequenceCase{"DownscaleAfterDelay",
                     Delays(1, 10, 30, 600),
                     3,
                     {{0, 3, 0, 3}, {300, 3, 0, 3}, {599.9, 3, 0, 3}, {600, 3, 0, 1}}},
        SequenceCase{"DirectionFlipRestartsDelay",
                     Delays(1, 10, 30, 600),
                     3,
                     {{0, 3, 0, 3}, {100, 3, 9, 3}, {129, 3, 9, 3}, {130, 3, 9, 9}}},
        SequenceCase{"DownFlipAfterUpRestarts",
                     Delays(1, 10, 30, 60),
                     3,
                     {{0, 3, 9, 3}, {20, 3, 0, 3}, {79, 3, 0, 3}, {80, 3, 0, 1}}},
        SequenceCase{"DownscaleToZeroDelay",
                     ToZeroDelay(5),
                     1,
                     {{0, 1, 0, 1}, {4.9, 1, 0, 1}, {5, 1, 0, 0}}},
        SequenceCase{"ToZeroUsesDownscaleDelayWhenUnset",
                     Delays(0, 10, 30, 100),
                     1,
                     {{0, 1, 0, 1}, {99, 1, 0, 1}, {100, 1, 0, 0}}},
        SequenceCase{"ToZeroIsTwoSteps",
                     ToZeroDelay(5),
                     3,
                     {{0, 3, 0, 3},
                      {5, 3, 0, 3},  // the to-zero delay applies only from 1
                      {100, 3, 0, 1},
                      {100.5, 1, 0, 1},
                      {105, 1, 0, 1},
                      {105.5, 1, 0, 0}}},
        SequenceCase{"ColdStartThenDelayedUpscale",
                     Delays(0, 10, 30, 600),
                     0,
                     {{0, 0, 1, 1},  // at once, no delay
                      {1, 0, 5, 1},  // still starting: cold start keeps T
                      {2, 1, 5, 1},  // running: the upscale delay applies
                      {31, 1, 5, 1},
                      {32, 1, 5, 5}}},
        SequenceCase{"ColdStartResetsPendingDownscale",
                     Delays(1, 10, 30, 60),
                     3,
                     {{0, 3, 0, 3}, {30, 0, 0, 3}, {40, 3, 0, 3}, {99, 3, 0, 3}, {100, 3, 0, 1}}},
        SequenceCase{"NoFlappingAroundThreshold",
                     Delays(1, 10, 30, 600),
                     4,
                     {{0, 4, 4.5, 4},
                      {10, 4, 3.5, 4},
                      {20, 4, 4.5, 4},
                      {30, 4, 3.5, 4},
                      {40, 4, 4.5, 4},
                      {50, 4, 3.2, 4},
                      {60, 4, 4.4, 4}}}),
    [](const auto& info) { return info.param.name; });

TEST(DefaultPolicyTest, SteadyLoadNeverChangesTarget) {
  AutoscalingConfig c = Delays(1, 10, 30, 600);
  c.target_ongoing_requests = 2;
  PolicyState state;
  int target = 3;
  for (int i = 0; i < 20000; ++i) {  // 2000 s at a 0.1 s loop
    PolicyInput in;
    in.now_s = i * 0.1;
    in.running_replicas = 3;
    in.target_replicas = target;
    in.total_requests = 5.5 + 0.4 * ((i % 7) / 6.0);  // 5.5..5.9: desired 2.75..2.95
    in.config = &c;
    target = DefaultPolicy(in, state);
    ASSERT_EQ(target, 3) << "at t=" << in.now_s;
  }
  EXPECT_EQ(state.direction, 0);
}

TEST(DefaultPolicyTest, StateRecordsDirectionAndStart) {
  AutoscalingConfig c = Delays(1, 10, 30, 600);
  PolicyState state;
  PolicyInput in;
  in.running_replicas = 2;
  in.target_replicas = 2;
  in.config = &c;
  in.now_s = 7;
  in.total_requests = 6;
  EXPECT_EQ(DefaultPolicy(in, state), 2);
  EXPECT_EQ(state.direction, 1);
  EXPECT_EQ(state.since_s, 7);
  in.now_s = 8;
  EXPECT_EQ(DefaultPolicy(in, state), 2);
  EXPECT_EQ(state.since_s, 7);  // unchanged while the direction holds
  in.now_s = 9;
  in.total_requests = 0;
  EXPECT_EQ(DefaultPolicy(in, state), 2);
  EXPECT_EQ(state.direction, -1);
  EXPECT_EQ(state.since_s, 9);
  in.total_requests = 2;
  EXPECT_EQ(DefaultPolicy(in, state), 2);
  EXPECT_EQ(state.direction, 0);
}

TEST(DefaultPolicyTest, AppliedChangeResetsState) {
  AutoscalingConfig c = Immediate(1, 10);
  PolicyState state{1, 0};
  PolicyInput in;
  in.now_s = 50;
  in.running_replicas = 2;
  in.target_replicas = 2;
  in.total_requests = 6;
  in.config = &c;
  EXPECT_EQ(DefaultPolicy(in, state), 6);
  EXPECT_EQ(state.direction, 0);
}

TEST(DefaultPolicyTest, NoConfigKeepsTarget) {
  PolicyState state;
  PolicyInput in;
  in.running_replicas = 2;
  in.target_replicas = 3;
  in.total_requests = 100;
  EXPECT_EQ(DefaultPolicy(in, state), 3);
}

TEST(DefaultPolicyTest, HugeLoadIsClampedWithoutOverflow) {
  AutoscalingConfig c = Immediate(1, 100);
  PolicyState state;
  PolicyInput in;
  in.running_replicas = 1;
  in.target_replicas = 1;
  in.total_requests = 1e300;
  in.config = &c;
  EXPECT_EQ(DefaultPolicy(in, state), 100);
}

TEST(DefaultPolicyTest, CustomPolicyFnHasTheSameShape) {
  PolicyFn fn = DefaultPolicy;
  AutoscalingConfig c = Immediate(1, 10);
  PolicyState state;
  PolicyInput in;
  in.running_replicas = 2;
  in.target_replicas = 2;
  in.total_requests = 8;
  in.config = &c;
  EXPECT_EQ(fn(in, state), 8);
}

}  // namespace
}  // namespace serve::autoscaler

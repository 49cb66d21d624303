// Node resources: detection through a fake machine probe, overrides and their validation.
#include "node/resources.h"

#include <gtest/gtest.h>

namespace serve::node {
namespace {

class FakeProbe : public MachineProbe {
 public:
  int cpus = 8;
  int64_t memory = int64_t{16} << 30;
  int gpus = 0;
  int CpuCount() const override { return cpus; }
  int64_t AvailableMemoryBytes() const override { return memory; }
  int GpuCount() const override { return gpus; }
};

TEST(NodeResourcesTest, DefaultsComeFromTheMachine) {
  FakeProbe probe;
  probe.gpus = 2;
  NodeResources r = ResolveNodeResources({}, probe);
  EXPECT_EQ(r.num_cpus, 8);
  EXPECT_EQ(r.num_gpus, 2);
  EXPECT_EQ(r.memory_bytes, static_cast<double>(int64_t{16} << 30));
  EXPECT_TRUE(r.custom.empty());
  nlohmann::json j = r.ToJson();
  EXPECT_EQ(j["CPU"], 8);
  EXPECT_EQ(j["GPU"], 2);
}

TEST(NodeResourcesTest, NoGpuMeansNoGpuKeyAsInRay) {
  NodeResources r = ResolveNodeResources({}, FakeProbe());
  EXPECT_FALSE(r.ToJson().contains("GPU"));
}

TEST(NodeResourcesTest, OverridesWinAndCustomResourcesRoundTrip) {
  ResourceOverrides o;
  o.num_cpus = 2.5;
  o.num_gpus = 4;
  o.memory_bytes = 1e9;
  o.resources_json = R"({"TPU": 4, "accelerator_type:A100": 1})";
  NodeResources r = ResolveNodeResources(o, FakeProbe());
  EXPECT_EQ(r.num_cpus, 2.5);
  EXPECT_EQ(r.num_gpus, 4);
  EXPECT_EQ(r.memory_bytes, 1e9);
  EXPECT_EQ(r.custom.at("TPU"), 4);
  NodeResources back = NodeResources::FromJson(r.ToJson());
  EXPECT_EQ(back.num_cpus, 2.5);
  EXPECT_EQ(back.num_gpus, 4);
  EXPECT_EQ(back.custom, r.custom);
}

void ExpectRejected(const ResourceOverrides& o, const std::string& fragment) {
  try {
    ResolveNodeResources(o, FakeProbe());
    ADD_FAILURE() << "accepted; expected an error containing: " << fragment;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(NodeResourcesTest, InvalidOverridesNameTheOptionAndReason) {
  ResourceOverrides o;
  o.num_cpus = -1;
  ExpectRejected(o, "--num-cpus: must be a number >= 0");
  o = {};
  o.num_gpus = 0.5;
  ExpectRejected(o, "--num-gpus: must be a whole number");
  o = {};
  o.resources_json = "{not json";
  ExpectRejected(o, "--resources: not valid JSON");
  o.resources_json = "[1, 2]";
  ExpectRejected(o, "--resources: must be a JSON object");
  o.resources_json = R"({"CPU": 3})";
  ExpectRejected(o, "\"CPU\" is set with --num-cpus");
  o.resources_json = R"({"TPU": "four"})";
  ExpectRejected(o, "\"TPU\" must be a number");
  o.resources_json = R"({"TPU": -4})";
  ExpectRejected(o, "\"TPU\": must be a number >= 0");
}

// The real probe on this machine: at least one CPU, some memory, and a GPU count that is 0
// rather than a crash where the CUDA runtime or a driver is missing.
TEST(NodeResourcesTest, SystemProbeReadsThisMachine) {
  SystemProbe probe;
  EXPECT_GE(probe.CpuCount(), 1);
  EXPECT_GT(probe.AvailableMemoryBytes(), 0);
  EXPECT_GE(probe.GpuCount(), 0);
}

}  // namespace
}  // namespace serve::node

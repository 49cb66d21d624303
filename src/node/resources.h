#pragma once

// The resources a node offers to replicas, as Ray counts them: CPU (fractional units), GPU,
// memory (bytes) and custom named resources. Defaults come from the machine; the agent's
// --num-cpus / --num-gpus / --memory / --resources options override them.

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace serve::node {

/// Facts about the machine, behind an interface so that tests can fake them.
class MachineProbe {
 public:
  virtual ~MachineProbe() = default;
  /// CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.
  virtual int CpuCount() const = 0;
  /// Memory available to new processes, in bytes (MemAvailable, capped by a cgroup limit).
  virtual int64_t AvailableMemoryBytes() const = 0;
  /// GPUs visible through the CUDA runtime, loaded at run time; 0 when it or a driver is absent.
  virtual int GpuCount() const = 0;
};

/// The real machine: /proc, /sys/fs/cgroup and the CUDA runtime (dlopen of libcudart, then
/// libcuda), so that neither the build nor the host needs CUDA.
class SystemProbe final : public MachineProbe {
 public:
  int CpuCount() const override;
  int64_t AvailableMemoryBytes() const override;
  int GpuCount() const override;
};

/// What the operator asked for; each unset field falls back to the probe.
struct ResourceOverrides {
  std::optional<double> num_cpus;
  std::optional<double> num_gpus;
  std::optional<double> memory_bytes;
  /// JSON object of custom resources, e.g. {"TPU": 4, "special_hardware": 1}; "" for none.
  std::string resources_json;
};

struct NodeResources {
  double num_cpus = 0;
  double num_gpus = 0;
  double memory_bytes = 0;
  std::map<std::string, double> custom;

  /// Ray's resource dict: {"CPU": n, "GPU": n, "memory": bytes, <custom>...}; GPU is
  /// present only when > 0, as in Ray.
  nlohmann::json ToJson() const;
  static NodeResources FromJson(const nlohmann::json& j);
};

/// Resolves overrides against the probe. Throws std::invalid_argument naming the option and
/// the reason (negative amounts, a malformed --resources object, a custom resource that
/// shadows CPU/GPU/memory).
NodeResources ResolveNodeResources(const ResourceOverrides& overrides, const MachineProbe& probe);

}  // namespace serve::node

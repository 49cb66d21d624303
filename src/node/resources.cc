#include "node/resources.h"

#include <dlfcn.h>
#include <sched.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace serve::node {
namespace {

std::optional<std::string> ReadSmallFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// cgroup v2 CPU quota ("max 100000" or "150000 100000"): CPUs it allows, rounded up.
std::optional<int> CgroupCpuLimit() {
  auto text = ReadSmallFile("/sys/fs/cgroup/cpu.max");
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  double q = std::strtod(quota.c_str(), nullptr);
  if (q <= 0) return std::nullopt;
  return static_cast<int>(std::ceil(q / period));
}

std::optional<int64_t> CgroupMemoryLeft() {
  auto max = ReadSmallFile("/sys/fs/cgroup/memory.max");
  auto cur = ReadSmallFile("/sys/fs/cgroup/memory.current");
  if (!max || !cur || max->rfind("max", 0) == 0) return std::nullopt;
  int64_t left = std::strtoll(max->c_str(), nullptr, 10) - std::strtoll(cur->c_str(), nullptr, 10);
  return left > 0 ? std::optional<int64_t>(left) : std::nullopt;
}

// Calls `symbol` (int fn(int*)) of the first library of `names` that loads and has it.
std::optional<int> CountThrough(std::initializer_list<const char*> names, const char* init,
                                const char* symbol) {
  for (const char* name : names) {
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) continue;
    std::optional<int> count;
    if (init != nullptr) {
      using InitFn = int (*)(unsigned);
      auto fn = reinterpret_cast<InitFn>(dlsym(lib, init));
      if (fn == nullptr || fn(0) != 0) {
        dlclose(lib);
        return 0;  // the driver library is there but no usable driver/device
      }
    }
    using CountFn = int (*)(int*);
    if (auto fn = reinterpret_cast<CountFn>(dlsym(lib, symbol)); fn != nullptr) {
      int n = 0;
      count = fn(&n) == 0 ? n : 0;  // any CUDA error (no driver, no device) means no GPU
    }
    dlclose(lib);
    if (count) return count;
  }
  return std::nullopt;
}

void CheckAmount(const char* option, double v) {
  if (!std::isfinite(v) || v < 0) {
    throw std::invalid_argument(std::string(option) + ": must be a number >= 0");
  }
}

}  // namespace

int SystemProbe::CpuCount() const {
  cpu_set_t set;
  CPU_ZERO(&set);
  int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  if (auto limit = CgroupCpuLimit(); limit && *limit < n) n = *limit;
  return n > 0 ? n : 1;
}

int64_t SystemProbe::AvailableMemoryBytes() const {
  int64_t avail = 0;
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      break;
    }
  }
  if (auto left = CgroupMemoryLeft(); left && (*left < avail || avail == 0)) avail = *left;
  return avail;
}

int SystemProbe::GpuCount() const {
  // The runtime API first (it honours CUDA_VISIBLE_DEVICES), then the driver API.
  if (auto n = CountThrough({"libcudart.so", "libcudart.so.13", "libcudart.so.12",
                             "libcudart.so.11.0"},
                            nullptr, "cudaGetDeviceCount")) {
    return *n;
  }
  return CountThrough({"libcuda.so.1", "libcuda.so"}, "cuInit", "cuDeviceGetCount").value_or(0);
}

nlohmann::json NodeResources::ToJson() const {
  nlohmann::json j = {{"CPU", num_cpus}, {"memory", memory_bytes}};
  if (num_gpus > 0) j["GPU"] = num_gpus;
  for (const auto& [name, amount] : custom) j[name] = amount;
  return j;
}

NodeResources NodeResources::FromJson(const nlohmann::json& j) {
  NodeResources r;
  for (const auto& [name, value] : j.items()) {
    if (!value.is_number()) continue;
    double v = value.get<double>();
    if (name == "CPU") {
      r.num_cpus = v;
    } else if (name == "GPU") {
      r.num_gpus = v;
    } else if (name == "memory") {
      r.memory_bytes = v;
    } else {
      r.custom[name] = v;
    }
  }
  return r;
}

NodeResources ResolveNodeResources(const ResourceOverrides& overrides, const MachineProbe& probe) {
  NodeResources r;
  r.num_cpus = overrides.num_cpus.value_or(probe.CpuCount());
  CheckAmount("--num-cpus", r.num_cpus);
  r.num_gpus = overrides.num_gpus.value_or(probe.GpuCount());
  CheckAmount("--num-gpus", r.num_gpus);
  if (r.num_gpus != std::floor(r.num_gpus)) {
    throw std::invalid_argument("--num-gpus: must be a whole number of devices");
  }
  r.memory_bytes = overrides.memory_bytes.value_or(static_cast<double>(probe.AvailableMemoryBytes()));
  CheckAmount("--memory", r.memory_bytes);
  if (overrides.resources_json.empty()) return r;
  nlohmann::json custom;
  try {
    custom = nlohmann::json::parse(overrides.resources_json);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::invalid_argument(std::string("--resources: not valid JSON (") + e.what() + ")");
  }
  if (!custom.is_object()) {
    throw std::invalid_argument("--resources: must be a JSON object of name -> amount");
  }
  for (const auto& [name, value] : custom.items()) {
    if (name == "CPU" || name == "GPU" || name == "memory") {
      throw std::invalid_argument("--resources: \"" + name +
                                  "\" is set with --num-cpus/--num-gpus/--memory, not here");
    }
    if (name.empty()) throw std::invalid_argument("--resources: a resource name is empty");
    if (!value.is_number()) {
      throw std::invalid_argument("--resources: \"" + name + "\" must be a number");
    }
    double v = value.get<double>();
    CheckAmount(("--resources: \"" + name + "\"").c_str(), v);
    r.custom[name] = v;
  }
  return r;
}

}  // namespace serve::node

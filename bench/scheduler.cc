// Replica placement at cluster scale (docs/benchmarks.md, "Multi-node"): 1,000 replicas over
// 50 simulated nodes, one process, one thread, no sockets.
//
//   build/bin/bench_scheduler [--nodes 50] [--replicas 1000] [--deployments 10] [--rounds 5]
//
// 1. Scheduler alone (src/controller/scheduler.h) over a NodeTable of `nodes` alive nodes of
//    32 CPUs, 8 GPUs and 128 GiB each: `replicas` Place() calls, round-robin over `deployments`
//    deployments, into a fresh Scheduler per round, for three demand shapes: {CPU 1};
//    {CPU 1, GPU 0.25} (fractional GPUs packed onto devices); {CPU 1} with
//    max_replicas_per_node 3. Then one node dies: ReleaseNode and Place() of its replicas on the
//    other nodes (what a node death costs the scheduler). Each Place() is timed apart
//    (steady_clock); the table gives the median round.
// 2. The control loop's path: a ControlLoop with the unit tests' fakes
//    (tests/unit/controller_fakes.h), the head and `nodes`-1 workers registered through
//    RegisterNode (a FakeAgent each), one application of `deployments` deployments of
//    replicas/deployments replicas ({CPU 1}). Timed: the Step() after the build result, which
//    creates, places (ScheduleReplicas) and launches every replica; then, with every replica
//    RUNNING, the steps after one worker misses its heartbeats until its replicas are placed
//    on other nodes ($SERVE_NODE_HEARTBEAT_TIMEOUT_S, 2 unless set, on the fake clock).
//    `rounds` fresh loops; median and range.
// Logging goes to a null sink. About 5 s with the defaults on one core.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controller/control_loop.h"
#include "controller/scheduler.h"
#include "controller_fakes.h"
#include "fake_controller.h"
#include "stats.h"

namespace {

using serve::bench::Mean;
using serve::bench::Percentile;
using serve::controller::NodeInfo;
using serve::controller::NodeTable;
using serve::controller::ResourceSet;
using serve::controller::Scheduler;
using namespace serve::controller::testing;
using Json = nlohmann::json;

double NowUs() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Options {
  int nodes = 50;
  int replicas = 1000;
  int deployments = 10;
  int rounds = 5;
};

// ------------------------------------------------------------------ 1. Scheduler alone

struct Shape {
  const char* name;
  ResourceSet demand;
  int max_per_node;
};

struct SchedRound {
  double total_ms = 0;
  std::vector<double> place_us;
  double failover_ms = 0;  ///< ReleaseNode + re-placing the dead node's replicas
  int moved = 0;
  int failed = 0;  ///< placements that found no node (should be 0)
};

NodeTable MakeNodes(int n) {
  NodeTable nodes;
  for (int i = 1; i <= n; ++i) {
    NodeInfo node;
    node.id = "node" + std::to_string(i);
    node.ip = "127.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
    node.resources = {{"CPU", 32}, {"GPU", 8}, {"memory", 128.0 * (1LL << 30)}};
    node.head = i == 1;
    node.last_heartbeat_s = 0;
    nodes.Register(std::move(node));
  }
  return nodes;
}

SchedRound RunScheduler(const Options& o, const Shape& shape) {
  SchedRound r;
  NodeTable nodes = MakeNodes(o.nodes);
  Scheduler s(nodes);
  struct Placed {
    std::string replica, deployment, node;
  };
  std::vector<Placed> placed;
  r.place_us.reserve(static_cast<size_t>(o.replicas));
  double t0 = NowUs();
  for (int i = 0; i < o.replicas; ++i) {
    std::string id = "r" + std::to_string(i);
    std::string dep = "app#D" + std::to_string(i % o.deployments);
    double a = NowUs();
    auto p = s.Place(id, dep, shape.demand, shape.max_per_node);
    r.place_us.push_back(NowUs() - a);
    if (!p) {
      ++r.failed;
      continue;
    }
    placed.push_back({id, dep, p->node_id});
  }
  r.total_ms = (NowUs() - t0) / 1e3;
  // A worker dies (the others heartbeat, it expires), as the control loop sees it: what it
  // held is freed and its replicas are placed again on the other nodes.
  const std::string dead = "node" + std::to_string(o.nodes / 2 + 1);
  for (const NodeInfo* n : nodes.Ordered()) {
    if (n->id != dead) nodes.Heartbeat(n->id, 100);
  }
  nodes.ExpireSilent(100, 10);
  double f0 = NowUs();
  s.ReleaseNode(dead);
  for (const Placed& x : placed) {
    if (x.node != dead) continue;
    auto p = s.Place(x.replica + "-new", x.deployment, shape.demand, shape.max_per_node);
    r.failed += p && p->node_id != dead ? 0 : 1;
    ++r.moved;
  }
  r.failover_ms = (NowUs() - f0) / 1e3;
  return r;
}

void SchedulerTable(const Options& o) {
  std::vector<Shape> shapes = {
      {"{CPU 1}", {{"CPU", 1}}, 0},
      {"{CPU 1, GPU 0.25}", {{"CPU", 1}, {"GPU", 0.25}}, 0},
      {"{CPU 1}, max_replicas_per_node 3", {{"CPU", 1}}, 3},
  };
  std::printf("## Scheduler alone: %d replicas (%d deployments) over %d nodes, %d rounds\n\n",
              o.replicas, o.deployments, o.nodes, o.rounds);
  std::printf("| demand | total ms (median, min–max) | µs/placement mean | p50 | p99 | "
              "first 100 mean µs | last 100 mean µs | node death: re-place n replicas, ms |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Shape& shape : shapes) {
    std::vector<SchedRound> rounds;
    for (int i = 0; i < o.rounds; ++i) rounds.push_back(RunScheduler(o, shape));
    std::sort(rounds.begin(), rounds.end(),
              [](const SchedRound& a, const SchedRound& b) { return a.total_ms < b.total_ms; });
    const SchedRound& m = rounds[rounds.size() / 2];
    size_t k = std::min<size_t>(100, m.place_us.size());
    std::vector<double> first(m.place_us.begin(), m.place_us.begin() + static_cast<long>(k));
    std::vector<double> last(m.place_us.end() - static_cast<long>(k), m.place_us.end());
    std::printf("| %s | %.2f (%.2f–%.2f) | %.2f | %.2f | %.2f | %.2f | %.2f | %d in %.2f |%s\n",
                shape.name, m.total_ms, rounds.front().total_ms, rounds.back().total_ms,
                Mean(m.place_us), Percentile(m.place_us, 0.5), Percentile(m.place_us, 0.99),
                Mean(first), Mean(last), m.moved, m.failover_ms,
                m.failed ? (" **" + std::to_string(m.failed) + " not placed**").c_str() : "");
  }
}

// ------------------------------------------------------------------ 2. The control loop's path

struct LoopRound {
  double deploy_step_ms = 0;  ///< the Step() that creates, places and launches every replica
  int placed = 0;
  int nodes_used = 0;
  double death_ms = 0;  ///< steps from the heartbeat expiry until the replicas are placed again
  int death_steps = 0;
  int moved = 0;
};

class LoopBench {
 public:
  explicit LoopBench(const Options& o) : o_(o) {
    fc_.loop->set_agent_factory(
        [](const std::string&) { return std::make_unique<FakeAgent>(); });
  }

  bool Run(LoopRound& out) {
    auto& loop = *fc_.loop;
    for (int i = 2; i <= o_.nodes; ++i) {
      serve::v1::RegisterNodeRequest req;
      req.set_node_id("node" + std::to_string(i));
      req.set_node_ip("127.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
      req.set_agent_address("agent" + std::to_string(i));
      (*req.mutable_resources())["CPU"] = 32;
      (*req.mutable_resources())["memory"] = 128.0 * (1LL << 30);
      if (!loop.RegisterNode(req).ok()) return false;
    }
    loop.Step();
    if (!Deploy(out)) return false;
    // Everything RUNNING, then one worker falls silent past the heartbeat timeout.
    fc_.ReportStarted();
    loop.Step();
    std::string dead = "node" + std::to_string(o_.nodes / 2 + 1);
    for (auto& [id, d] : loop.deployments().deployments()) {
      for (auto& [rid, r] : d.replicas) out.moved += r.node_id == dead ? 1 : 0;
    }
    double timeout = serve::controller::NodeHeartbeatTimeoutS();
    for (double silent = 0.5;; silent += 0.5) {
      fc_.clock.Advance(0.5);
      for (int i = 2; i <= o_.nodes; ++i) {
        std::string id = "node" + std::to_string(i);
        if (id != dead) (void)loop.NodeHeartbeat(id);
      }
      if (silent > timeout) break;  // the next step declares it DEAD
      loop.Step();
      fc_.replicas.AnswerHealth(absl::OkStatus());
    }
    double t0 = NowUs();
    for (out.death_steps = 1; out.death_steps <= 10; ++out.death_steps) {
      loop.Step();
      if (Scheduled(dead) == o_.replicas) break;
    }
    out.death_ms = (NowUs() - t0) / 1e3;
    return Scheduled(dead) == o_.replicas;
  }

 private:
  /// Deploys the application and times the step that creates, places and launches replicas.
  bool Deploy(LoopRound& out) {
    int per = o_.replicas / o_.deployments;
    std::vector<Json> code;
    for (int d = 0; d < o_.deployments; ++d) {
      code.push_back({{"name", "D" + std::to_string(d)}, {"num_replicas", per}});
    }
    Json doc = {{"applications",
                 {{{"name", "app"}, {"route_prefix", "/"}, {"import_path", "m:app"}}}}};
    if (!fc_.DeployAndAnswerBuilds(doc, code, "D0")) return false;
    double t0 = NowUs();
    fc_.loop->Step();
    out.deploy_step_ms = (NowUs() - t0) / 1e3;
    std::map<std::string, int> per_node;
    for (auto& [id, d] : fc_.loop->deployments().deployments()) {
      for (auto& [rid, r] : d.replicas) {
        if (r.scheduled) ++per_node[r.node_id];
      }
    }
    for (auto& [node, n] : per_node) out.placed += n;
    out.nodes_used = static_cast<int>(per_node.size());
    return out.placed == o_.replicas;
  }

  /// Replicas placed on a node other than `dead`.
  int Scheduled(const std::string& dead) {
    int n = 0;
    for (auto& [id, d] : fc_.loop->deployments().deployments()) {
      for (auto& [rid, r] : d.replicas) n += r.scheduled && r.node_id != dead ? 1 : 0;
    }
    return n;
  }

  Options o_;
  FakeRandom random_;
  serve::bench::FakeController fc_{"scheduler", random_,
                                   R"({"CPU": 32, "GPU": 8, "memory": 137438953472})"};
};

bool LoopTable(const Options& o) {
  std::vector<LoopRound> rounds;
  for (int i = 0; i < o.rounds; ++i) {
    LoopRound r;
    if (!LoopBench(o).Run(r)) {
      std::fprintf(stderr, "control loop round %d: placed %d of %d replicas\n", i, r.placed,
                   o.replicas);
      return false;
    }
    rounds.push_back(r);
  }
  std::vector<double> deploy, death;
  for (auto& r : rounds) {
    deploy.push_back(r.deploy_step_ms);
    death.push_back(r.death_ms);
  }
  std::printf("\n## ControlLoop (fakes): %d replicas (%d deployments × %d) over %d nodes, "
              "%d rounds\n\n",
              o.replicas, o.deployments, o.replicas / o.deployments, o.nodes, o.rounds);
  std::printf("| step | median ms | min–max ms | µs per replica (median) | detail |\n"
              "|---|---:|---:|---:|---|\n");
  std::printf("| deploy: create, place, launch all | %.2f | %.2f–%.2f | %.1f | %d placed on %d "
              "nodes |\n",
              Percentile(deploy, 0.5), *std::min_element(deploy.begin(), deploy.end()),
              *std::max_element(deploy.begin(), deploy.end()),
              Percentile(deploy, 0.5) * 1e3 / o.replicas, rounds[0].placed, rounds[0].nodes_used);
  std::printf("| node death: expiry → replicas placed elsewhere | %.2f | %.2f–%.2f | %.1f | "
              "%d replicas moved in %d step(s) |\n",
              Percentile(death, 0.5), *std::min_element(death.begin(), death.end()),
              *std::max_element(death.begin(), death.end()),
              rounds[0].moved ? Percentile(death, 0.5) * 1e3 / rounds[0].moved : 0.0,
              rounds[0].moved, rounds[0].death_steps);
  return true;
}

int Usage() {
  std::fprintf(stderr, "usage: bench_scheduler [--nodes 50] [--replicas 1000] "
                       "[--deployments 10] [--rounds 5]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    int v = std::atoi(argv[++i]);
    if (a == "--nodes") {
      o.nodes = v;
    } else if (a == "--replicas") {
      o.replicas = v;
    } else if (a == "--deployments") {
      o.deployments = v;
    } else if (a == "--rounds") {
      o.rounds = v;
    } else {
      return Usage();
    }
  }
  if (o.nodes < 2 || o.replicas < 1 || o.deployments < 1 || o.rounds < 1 ||
      o.replicas % o.deployments != 0) {
    return Usage();
  }
  serve::bench::QuietLogging();
  // The heartbeat timeout the node-death rows simulate (the loop reads it from the environment).
  ::setenv("SERVE_NODE_HEARTBEAT_TIMEOUT_S", "2", 0);
  SchedulerTable(o);
  return LoopTable(o) ? 0 : 1;
}

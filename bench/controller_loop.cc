// Controller loop at scale (docs/benchmarks.md, "Controller and autoscaling"): one process, one
// thread, the real ControlLoop driven by the unit tests' fakes (tests/unit/controller_fakes.h).
//
//   build/bin/bench_controller_loop [--apps 10] [--deployments-per-app 10]
//       [--scales 1000,4000] [--steady-steps 200] [--change-cycles 10] [--profile KIND]
//       [--samples FILE]
//
// `apps` × `deployments-per-app` autoscaling deployments (min 1, max 1000, target_ongoing 1,
// no up/downscale delay) are ramped, through handle-metrics load, to each replica count of
// `scales` (spread evenly) and measured there:
//   steady   `steady-steps` steps: every deployment gets a fresh handle report of the same load
//            (RecordHandleMetrics, one batch as a proxy sends it), the fake clock advances by
//            control_loop_interval_s (0.1 s), Step() runs, the health checks it issued are
//            answered OK (≈ replicas / 100 per step, 10 s period with jitter);
//   change   `change-cycles` × 2 steps where every deployment's target changes: load +1 per
//            deployment (a decision and a replica start each), then back (a stop each);
//   settle   the step after each change: the new replicas RUNNING (long-poll publish of every
//            targets key) or the stopped ones gone.
// One long-poll listener (the proxy) waits on every key and listens again after each answer.
// Step() alone is timed, by wall clock and by this thread's CPU time; event handlers and health
// answers run between steps, untimed, as gRPC threads would.
// Logging goes to a null sink at info level (messages are formatted, nothing is written).
// The checkpoint goes to an in-memory KvStore; the cost of writing it to a FileKvStore is
// printed apart. Runs a fixed number of steps: ≈ 15 s with the defaults.
//
// --samples FILE: every measured step as CSV (replicas, kind, wall and CPU ms, health checks,
// starts, stops). --profile steady|change|settle|all: under
// `valgrind --tool=callgrind --collect-atstart=no`, collects only inside the measured Step()
// calls of that kind.

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "common/util.h"
#include "controller/checkpoint.h"
#include "controller/control_loop.h"
#include "controller/endpoint_state.h"
#include "controller/storage/file_kv_store.h"
#include "controller_fakes.h"
#include "fake_controller.h"
#include "stats.h"

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define BENCH_TOGGLE_COLLECT() CALLGRIND_TOGGLE_COLLECT
#else
#define BENCH_TOGGLE_COLLECT() ((void)0)
#endif

namespace {

using serve::DeploymentId;
using serve::controller::ControlLoop;
using serve::controller::DeploymentState;
using serve::controller::Random;
using serve::controller::ReplicaState;
using namespace serve::controller::testing;
using Json = nlohmann::json;

constexpr double kIntervalS = 0.1;  // ControllerOptions::control_loop_interval_s default

/// FakeRandom's ids ("r1", "r2", ...) with real jitter (seeded), so that health checks spread
/// over steps as they do in production.
class JitterRandom final : public Random {
 public:
  double Uniform(double lo, double hi) override {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }
  std::string Id(size_t n) override { return ids_.Id(n); }

 private:
  FakeRandom ids_;
  std::mt19937_64 rng_{42};
};

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}
double WallMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
using serve::bench::Mean;
using serve::bench::Percentile;

enum class Kind { kRamp, kSteady, kUp, kDown, kSettleUp, kSettleDown };
/// The --profile name of a kind.
const char* Name(Kind k) {
  switch (k) {
    case Kind::kRamp: return "ramp";
    case Kind::kSteady: return "steady";
    case Kind::kUp:
    case Kind::kDown: return "change";
    case Kind::kSettleUp:
    case Kind::kSettleDown: return "settle";
  }
  return "?";
}

struct Sample {
  Kind kind;
  double wall_ms, cpu_ms, record_ms;
  int health_checks, starts, stops;
  bool long_poll_answered;
};

struct Options {
  int apps = 10;
  int deployments_per_app = 10;
  std::vector<int> scales = {1000, 4000};
  int steady_steps = 200;
  int change_cycles = 10;
  std::string profile;  // "", steady, change, settle, all
  std::string samples;  // CSV output path, "" for none
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}

  int Run() {
    if (!DeployAll()) return 1;
    std::printf("%d applications x %d deployments, autoscaling; fake agent and replicas\n",
                o_.apps, o_.deployments_per_app);
    for (int scale : o_.scales) {
      int per = std::max(1, scale / static_cast<int>(ids_.size()));
      double t0 = WallMs();
      int ramp_steps = Ramp(per);
      if (ramp_steps < 0) return 1;
      std::printf("\n== %d RUNNING replicas (%d per deployment): ramp %d steps, %.0f ms\n",
                  Running(), per, ramp_steps, WallMs() - t0);
      samples_.clear();
      for (int i = 0; i < 10; ++i) StepOnce(Kind::kRamp);  // warm-up, health timers spread
      for (int i = 0; i < o_.steady_steps; ++i) StepOnce(Kind::kSteady);
      for (int c = 0; c < o_.change_cycles; ++c) {
        SetLoad(per + 1);
        StepOnce(Kind::kUp);
        ReportStarted();
        StepOnce(Kind::kSettleUp);
        SetLoad(per);
        StepOnce(Kind::kDown);
        ExitStopped();
        StepOnce(Kind::kSettleDown);
      }
      if (Running() != per * static_cast<int>(ids_.size())) {
        std::fprintf(stderr, "unexpected replica count %d\n", Running());
        return 1;
      }
      Report(per * static_cast<int>(ids_.size()));
    }
    return 0;
  }

 private:
  bool DeployAll() {
    Json apps = Json::array();
    for (int a = 0; a < o_.apps; ++a) {
      apps.push_back({{"name", "app" + std::to_string(a)},
                      {"route_prefix", "/app" + std::to_string(a)},
                      {"import_path", "m:app"}});
    }
    std::vector<Json> options;
    for (int d = 0; d < o_.deployments_per_app; ++d) {
      options.push_back({{"name", "D" + std::to_string(d)},
                         {"autoscaling_config",
                          {{"min_replicas", 1},
                           {"max_replicas", 1000},
                           {"target_ongoing_requests", 1},
                           {"upscale_delay_s", 0},
                           {"downscale_delay_s", 0},
                           {"metrics_interval_s", 0.5},
                           {"look_back_period_s", 2}}}});
    }
    if (!fc_.DeployAndAnswerBuilds(Json{{"applications", apps}}, options, "D0")) return false;
    loop_->Step();
    for (auto& [id, d] : loop_->deployments().deployments()) ids_.push_back(id);
    if (ids_.size() != static_cast<size_t>(o_.apps * o_.deployments_per_app)) {
      std::fprintf(stderr, "expected %d deployments, got %zu\n",
                   o_.apps * o_.deployments_per_app, ids_.size());
      return false;
    }
    for (auto& id : ids_) load_[id.Key()] = 1;
    return true;
  }

  void SetLoad(int per) {
    for (auto& [k, v] : load_) v = per;
  }

  int Running() const {
    int n = 0;
    for (auto& [id, d] : loop_->deployments().deployments()) {
      for (auto& [rid, r] : d.replicas) n += r.state == ReplicaState::kRunning ? 1 : 0;
    }
    return n;
  }

  /// Steps with load `per` on every deployment until each has exactly `per` RUNNING replicas
  /// and nothing in transition. Returns the steps taken, -1 when it does not converge.
  int Ramp(int per) {
    SetLoad(per);
    for (int i = 1; i <= 50; ++i) {
      StepOnce(Kind::kRamp);
      ReportStarted();
      ExitStopped();
      bool done = true;
      for (auto& [id, d] : loop_->deployments().deployments()) {
        int running = 0;
        for (auto& [rid, r] : d.replicas) running += r.state == ReplicaState::kRunning ? 1 : 0;
        done &= running == per && static_cast<int>(d.replicas.size()) == per;
      }
      if (done) return i;
    }
    std::fprintf(stderr, "the ramp to %d per deployment did not converge\n", per);
    return -1;
  }

  /// One handle report per deployment, as the proxy's routers send them: 1 request on each of
  /// the first `load` RUNNING replicas, the rest queued.
  serve::v1::HandleMetricsBatch MetricsBatch() {
    serve::v1::HandleMetricsBatch batch;
    for (auto& [id, d] : loop_->deployments().deployments()) {
      int load = load_[id.Key()];
      auto* r = batch.add_reports();
      r->set_deployment_key(id.Key());
      r->set_handle_id("proxy-node1-" + id.Key());
      r->set_source("proxy:node1");
      int placed = 0;
      auto& running = *r->mutable_running_requests();
      for (auto& [rid, rep] : d.replicas) {
        if (rep.state != ReplicaState::kRunning) continue;
        running[rid] = placed < load ? 1.0 : 0.0;
        placed += placed < load ? 1 : 0;
      }
      r->set_queued_requests(load - placed);
      r->set_timestamp_s(clock_.UnixNow() + static_cast<double>(++pushes_) * 1e-6);
    }
    return batch;
  }

  void StepOnce(Kind kind) {
    clock_.Advance(kIntervalS);
    serve::v1::HandleMetricsBatch batch = MetricsBatch();
    double r0 = WallMs();
    loop_->RecordHandleMetrics(batch);
    double r1 = WallMs();
    size_t starts = agent_.started.size(), stops = agent_.stopped.size();
    bool collect = !o_.profile.empty() && kind != Kind::kRamp &&
                   (o_.profile == "all" || o_.profile == Name(kind));
    if (collect) BENCH_TOGGLE_COLLECT();
    double w0 = WallMs(), c0 = ThreadCpuMs();
    loop_->Step();
    double c1 = ThreadCpuMs(), w1 = WallMs();
    if (collect) BENCH_TOGGLE_COLLECT();
    int health = replicas_.AnswerHealth(absl::OkStatus());
    replicas_.AnswerReconfigure(absl::OkStatus());
    bool answered = listener_answered_;
    Relisten();
    samples_.push_back({kind, w1 - w0, c1 - c0, r1 - r0, health,
                        static_cast<int>(agent_.started.size() - starts),
                        static_cast<int>(agent_.stopped.size() - stops), answered});
  }

  /// The proxy's long poll: listens on every key with the snapshot ids it saw.
  void Relisten() {
    if (listening_ && !listener_answered_) return;
    listener_answered_ = false;
    for (auto& u : reply_.updates()) seen_[u.key()] = u.snapshot_id();
    reply_.Clear();
    std::map<std::string, int64_t> keys = seen_;
    keys.try_emplace(std::string(serve::kRouteTableKey), -1);
    for (auto& id : ids_) keys.try_emplace(serve::TargetsKey(id), -1);
    listening_ = true;
    loop_->Listen(std::move(keys), [this](std::vector<serve::v1::Update> updates, bool timed_out) {
      // As ControllerService::ListenForChange: moved into the gRPC reply, under the loop's lock.
      reply_.set_timed_out(timed_out);
      for (auto& u : updates) *reply_.add_updates() = std::move(u);
      listener_answered_ = true;
    });
  }

  void ReportStarted() { fc_.ReportStarted(); }

  void ExitStopped() {
    if (tag_by_pid_.size() != agent_.pid_by_tag.size()) {
      for (auto& [tag, pid] : agent_.pid_by_tag) tag_by_pid_[pid] = tag;
    }
    for (; stops_seen_ < agent_.stopped.size(); ++stops_seen_) {
      int pid = agent_.stopped[stops_seen_].first;
      auto it = tag_by_pid_.find(pid);
      if (it == tag_by_pid_.end()) continue;
      serve::v1::ProcessExit msg;
      msg.set_node_id("node1");
      msg.set_pid(pid);
      msg.set_tag(it->second);
      msg.set_exit_code(0);
      loop_->OnProcessExit(msg);
    }
  }

  void Report(int replicas) {
    auto row = [&](const char* label, const std::vector<const Sample*>& s) {
      if (s.empty()) return;
      std::vector<double> wall, cpu, rec;
      double health = 0, starts = 0, stops = 0;
      int answers = 0, max_health = 0;
      for (auto* x : s) {
        wall.push_back(x->wall_ms);
        cpu.push_back(x->cpu_ms);
        rec.push_back(x->record_ms);
        health += x->health_checks;
        max_health = std::max(max_health, x->health_checks);
        starts += x->starts;
        stops += x->stops;
        answers += x->long_poll_answered ? 1 : 0;
      }
      double n = static_cast<double>(s.size());
      std::printf("| %d | %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f (max %d) | "
                  "%.0f / %.0f | %d | %.3f |\n",
                  replicas, label, s.size(), Percentile(wall, 0.5), Percentile(wall, 0.9),
                  *std::max_element(wall.begin(), wall.end()), Percentile(cpu, 0.5), Mean(cpu),
                  *std::max_element(cpu.begin(), cpu.end()), health / n, max_health, starts / n,
                  stops / n, answers, Percentile(rec, 0.5));
    };
    std::map<Kind, std::vector<const Sample*>> by_kind;
    std::vector<const Sample*> all, change;
    for (auto& s : samples_) {
      if (s.kind == Kind::kRamp) continue;
      all.push_back(&s);
      by_kind[s.kind].push_back(&s);
      if (s.kind == Kind::kUp || s.kind == Kind::kDown) change.push_back(&s);
    }
    std::printf("| replicas | steps | n | wall p50 ms | p90 | max | CPU p50 ms | mean | max | "
                "health checks/step | starts / stops per step | long-poll answers | "
                "RecordHandleMetrics p50 ms |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
                "---|---:|---:|\n");
    row("all measured", all);
    row("steady", by_kind[Kind::kSteady]);
    row("targets change (up + down)", change);
    row("… up: +1 replica each", by_kind[Kind::kUp]);
    row("… down: -1 replica each", by_kind[Kind::kDown]);
    row("next step: new ones RUNNING", by_kind[Kind::kSettleUp]);
    row("next step: stopped ones gone", by_kind[Kind::kSettleDown]);
    if (!o_.samples.empty()) {
      if (FILE* f = std::fopen(o_.samples.c_str(), csv_started_ ? "a" : "w")) {
        if (!csv_started_) {
          std::fprintf(f, "replicas,kind,wall_ms,cpu_ms,health_checks,starts,stops\n");
        }
        csv_started_ = true;
        static const char* kNames[] = {"ramp", "steady", "up", "down", "settle_up", "settle_down"};
        for (auto* x : all) {
          std::fprintf(f, "%d,%s,%.3f,%.3f,%d,%d,%d\n", replicas,
                       kNames[static_cast<int>(x->kind)], x->wall_ms, x->cpu_ms, x->health_checks,
                       x->starts, x->stops);
        }
        std::fclose(f);
      }
    }

    auto blob = kv_.Get(serve::controller::kCheckpointKey);
    size_t blob_size = blob.ok() ? blob->size() : 0;
    std::vector<double> put_ms, details_ms, encode_ms;
    if (blob.ok()) {
      auto store = serve::controller::FileKvStore::Create((session_ / "kv").string());
      for (int i = 0; store.ok() && i < 5; ++i) {
        double t0 = WallMs();
        (void)(*store)->Put("bench-checkpoint", *blob);
        put_ms.push_back(WallMs() - t0);
      }
    }
    // Parts of a step, timed apart on the same state (5 runs each, p50): the checkpoint's
    // msgpack encoding and the teardown of its JSON document, and the long-poll objects.
    std::vector<double> msgpack_ms, teardown_ms, objects_ms, serialize_ms;
    for (int i = 0; blob.ok() && i < 5; ++i) {
      auto doc = std::make_unique<Json>(Json::from_msgpack(*blob, true, false));
      double t0 = WallMs();
      std::vector<std::uint8_t> packed = Json::to_msgpack(*doc);
      double t1 = WallMs();
      doc.reset();
      double t2 = WallMs();
      msgpack_ms.push_back(t1 - t0);
      teardown_ms.push_back(t2 - t1);
      auto objects = serve::controller::LongPollObjects(loop_->applications(), loop_->deployments(),
                                                        loop_->nodes(), loop_->proxies());
      double t3 = WallMs();
      size_t bytes = 0;
      for (auto& [k, u] : objects) bytes += u.SerializeAsString().size();
      serialize_ms.push_back(WallMs() - t3);
      objects.clear();
      double t4 = WallMs();
      objects = serve::controller::LongPollObjects(loop_->applications(), loop_->deployments(),
                                                   loop_->nodes(), loop_->proxies());
      objects_ms.push_back(WallMs() - t4);
      (void)bytes;
    }
    size_t details_size = 0;
    for (int i = 0; i < 5; ++i) {
      double t0 = WallMs();
      details_size = loop_->Details("").dump().size();
      details_ms.push_back(WallMs() - t0);
    }
    std::printf("parts (timed apart, p50): checkpoint %zu bytes: Json::to_msgpack %.2f ms, "
                "JSON document teardown %.2f ms; long-poll objects built %.2f ms, serialized "
                "%.2f ms\n",
                blob_size, Percentile(msgpack_ms, 0.5), Percentile(teardown_ms, 0.5),
                Percentile(objects_ms, 0.5), Percentile(serialize_ms, 0.5));
    std::printf("outside the step: FileKvStore Put of the checkpoint p50 %.2f ms (on changed "
                "steps); REST Details() (under the loop's lock) + dump p50 %.2f ms, %zu bytes\n",
                Percentile(put_ms, 0.5), Percentile(details_ms, 0.5), details_size);
  }

  Options o_;
  JitterRandom random_;
  serve::bench::FakeController fc_{"controller-loop", random_};
  const std::filesystem::path& session_ = fc_.session;
  FakeClock& clock_ = fc_.clock;
  FakeAgent& agent_ = fc_.agent;
  FakeReplicaClient& replicas_ = fc_.replicas;
  MemoryKvStore& kv_ = fc_.kv;
  std::unique_ptr<ControlLoop>& loop_ = fc_.loop;
  std::vector<DeploymentId> ids_;
  std::map<std::string, int> load_;  // deployment key -> requests in flight
  int64_t pushes_ = 0;
  std::map<int, std::string> tag_by_pid_;
  size_t stops_seen_ = 0;
  std::map<std::string, int64_t> seen_;
  serve::v1::ListenReply reply_;
  bool listening_ = false;
  bool listener_answered_ = false;
  std::vector<Sample> samples_;
  bool csv_started_ = false;
};

int Usage() {
  std::fprintf(stderr,
               "usage: bench_controller_loop [--apps N] [--deployments-per-app N] "
               "[--scales 1000,4000] [--steady-steps N] [--change-cycles N] "
               "[--profile steady|change|settle|all] [--samples FILE]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (a == "--apps") {
      o.apps = std::atoi(v.c_str());
    } else if (a == "--deployments-per-app") {
      o.deployments_per_app = std::atoi(v.c_str());
    } else if (a == "--scales") {
      o.scales.clear();
      for (size_t p = 0; p <= v.size();) {
        size_t q = v.find(',', p);
        if (q == std::string::npos) q = v.size();
        o.scales.push_back(std::atoi(v.substr(p, q - p).c_str()));
        p = q + 1;
      }
    } else if (a == "--steady-steps") {
      o.steady_steps = std::atoi(v.c_str());
    } else if (a == "--change-cycles") {
      o.change_cycles = std::atoi(v.c_str());
    } else if (a == "--profile") {
      o.profile = v;
    } else if (a == "--samples") {
      o.samples = v;
    } else {
      return Usage();
    }
  }
  if (o.apps < 1 || o.deployments_per_app < 1 || o.scales.empty()) return Usage();
  serve::bench::QuietLogging();
  return Bench(std::move(o)).Run();
}

#include "router/router.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <spdlog/spdlog.h>

#include "rpc/auth.h"
#include "rpc/framed_connection.h"

namespace serve::router {
namespace asio = boost::asio;
using rpc::FrameType;

/// One data-plane connection to a replica, shared by every request routed to it. Connects
/// lazily; requests sent before the connection is up are queued by FramedConnection. Once a
/// connection fails (refused or lost) the replica is unreachable until a connection succeeds
/// again: it reconnects in the background with backoff (0.1 s doubling to 5 s) until closed.
class ReplicaConnection : public std::enable_shared_from_this<ReplicaConnection> {
 public:
  using FrameHandler = std::function<void(rpc::Frame*)>;  // nullptr: connection lost

  ReplicaConnection(asio::any_io_executor ex, std::string address)
      : ex_(ex), address_(std::move(address)), reconnect_timer_(ex_) {}

  void Send(uint64_t id, const std::string& payload, FrameHandler handler) {
    handlers_[id] = std::move(handler);
    ++in_flight_;
    ++queue_len_;  // the cache counts our request until the replica says otherwise
    if (conn_) {
      conn_->Send(FrameType::kRequest, id, payload);
      return;
    }
    backlog_.emplace_back(id, payload);
    if (!connecting_) Connect();
  }
  void Cancel(uint64_t id) {
    if (conn_ && handlers_.count(id)) conn_->Send(FrameType::kCancel, id, {});
  }
  /// Flow-control credit for the stream of request `id`: its consumer took `bytes` more.
  void Credit(uint64_t id, size_t bytes) {
    if (!conn_ || !handlers_.count(id)) return;
    std::string payload(8, '\0');
    uint64_t n = bytes;
    std::memcpy(payload.data(), &n, 8);
    conn_->Send(FrameType::kWindowUpdate, id, std::move(payload));
  }
  int in_flight() const { return in_flight_; }

  /// Queue length used for choosing (spec §5.2): the replica-reported count (from replies
  /// and probes), adjusted +1 per request sent; when older than kCacheTimeout it falls back to
  /// this router's own in-flight count and a probe refreshes it in the background.
  int Load() {
    auto now = std::chrono::steady_clock::now();
    if (now - reported_at_ < kCacheTimeout) return queue_len_;
    if (!probing_ && conn_) Probe();
    return in_flight_;
  }

  /// Asks the replica for its queue length (answered on the control path, not behind user
  /// code).
  void Probe() {
    if (!conn_) {
      probe_wanted_ = true;
      if (!connecting_) Connect();
      return;
    }
    probe_wanted_ = false;
    probing_ = true;
    conn_->Send(FrameType::kProbe, 0, {});
  }
  /// True since a connection attempt failed or the connection was lost, until one succeeds.
  bool broken() const { return broken_; }
  void Close() {
    closed_ = true;
    reconnect_timer_.cancel();
    if (conn_) conn_->Close();
  }

 private:
  void Connect() {
    connecting_ = true;
    auto socket = std::make_shared<asio::ip::tcp::socket>(ex_);
    asio::ip::tcp::endpoint ep;
    try {
      ep = rpc::ParseEndpoint(address_);
    } catch (...) {
      FailAll();
      return;
    }
    socket->async_connect(ep, [self = shared_from_this(), socket](boost::system::error_code ec) {
      self->connecting_ = false;
      if (ec) {
        self->FailAll();
        return;
      }
      self->broken_ = false;
      self->failures_ = 0;
      self->conn_ = std::make_shared<rpc::FramedConnection>(std::move(*socket));
      std::weak_ptr<ReplicaConnection> weak = self;
      self->conn_->Start(
          [weak](rpc::Frame&& f) {
            if (auto s = weak.lock()) s->OnFrame(std::move(f));
          },
          [weak] {
            if (auto s = weak.lock()) s->FailAll();
          });
      self->conn_->SendAuth(rpc::ClusterToken());
      for (auto& [id, payload] : self->backlog_) {
        self->conn_->Send(FrameType::kRequest, id, std::move(payload));
      }
      self->backlog_.clear();
      if (self->probe_wanted_) self->Probe();
    });
  }

  void OnFrame(rpc::Frame&& f) {
    if (f.type == FrameType::kProbeReply) {
      uint32_t n = 0;
      if (f.payload.size() >= 4) std::memcpy(&n, f.payload.data(), 4);
      Report(static_cast<int>(n));
      probing_ = false;
      return;
    }
    auto it = handlers_.find(f.id);
    if (it == handlers_.end()) return;
    if (f.type == FrameType::kAccepted) {
      it->second(&f);
      return;
    }
    bool final = f.type == FrameType::kResponse || f.type == FrameType::kEnd ||
                 f.type == FrameType::kError;
    if (final || f.type == FrameType::kResponseHead) {
      // The reply carries the replica's count when it accepted (or rejected) the request.
      v1::ResponseHead head;
      std::string_view body;
      if (rpc::DecodeEnvelope(f.payload, head, body)) {
        Report(head.accepted() ? std::max(head.num_ongoing() - (final ? 1 : 0), 0)
                               : head.num_ongoing());
      }
    }
    if (final) {
      auto h = std::move(it->second);
      handlers_.erase(it);
      --in_flight_;
      h(&f);
    } else {
      it->second(&f);
    }
  }

  void Report(int queue_len) {
    queue_len_ = queue_len;
    reported_at_ = std::chrono::steady_clock::now();
  }

  void FailAll() {
    broken_ = true;
    probing_ = false;
    conn_.reset();
    auto handlers = std::move(handlers_);
    handlers_.clear();
    backlog_.clear();
    in_flight_ = 0;
    ScheduleReconnect();
    for (auto& [id, h] : handlers) h(nullptr);
  }

  void ScheduleReconnect() {
    if (closed_) return;
    auto delay = std::chrono::milliseconds(std::min(100 << std::min(failures_, 6), 5000));
    ++failures_;
    reconnect_timer_.expires_after(delay);
    std::weak_ptr<ReplicaConnection> weak = shared_from_this();
    reconnect_timer_.async_wait([weak](boost::system::error_code ec) {
      auto s = weak.lock();
      if (ec || !s || s->closed_ || s->conn_ || s->connecting_) return;
      s->Probe();  // connects; success makes the replica reachable again
    });
  }

  asio::any_io_executor ex_;
  std::string address_;
  std::shared_ptr<rpc::FramedConnection> conn_;
  std::unordered_map<uint64_t, FrameHandler> handlers_;
  std::vector<std::pair<uint64_t, std::string>> backlog_;
  int in_flight_ = 0;
  int queue_len_ = 0;
  std::chrono::steady_clock::time_point reported_at_{};
  bool probing_ = false;
  bool probe_wanted_ = false;
  static constexpr std::chrono::seconds kCacheTimeout{10};  // RAY_SERVE_QUEUE_LENGTH_CACHE_TIMEOUT_S
  bool connecting_ = false;
  bool broken_ = false;
  bool closed_ = false;
  int failures_ = 0;  // consecutive failed connections (the reconnect backoff)
  asio::steady_timer reconnect_timer_;
};

namespace {
double EnvSeconds(const char* name, double fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  return end != v && x >= 0 ? x : fallback;
}
}  // namespace

Router::Router(asio::any_io_executor executor, std::string local_node_id)
    : executor_(std::move(executor)),
      local_node_id_(std::move(local_node_id)),
      rng_(std::random_device{}()),
      match_timeout_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::duration<double>(
              EnvSeconds("RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S", 1.0)))) {
  const char* aware = std::getenv("SERVE_MULTIPLEXED_ROUTING");
  model_aware_ = aware == nullptr || std::string(aware) != "0";
}

Router::~Router() {
  metrics_.reset();
  for (auto& [addr, c] : connections_) c->Close();
}

void Router::EnableMetrics(MetricsOptions options) {
  metrics_ = std::make_unique<MetricsReporter>(
      executor_, std::move(options), [this](const std::string& key) { return SampleLoad(key); });
  if (!metrics::Enabled()) return;
  // "replica:<id>" / "proxy:<node>": the actor is the part after the kind.
  const std::string& source = metrics_->source();
  std::string actor = source.substr(source.find(':') + 1);
  bool is_handle = source.rfind("proxy:", 0) != 0;
  serve_metrics_ = std::make_unique<RouterMetrics>(
      executor_, actor, metrics_->handle_id(), is_handle,
      [this](const std::function<void(const std::string&, const RouterLoad&)>& visit) {
        for (const auto& [key, d] : deployments_) {
          RouterLoad load;
          for (const auto& p : d.queue) load.queued += p->finished ? 0 : 1;
          for (const auto& r : d.replicas) load.at_replicas += r.conn->in_flight();
          load.in_backoff = d.backoff && d.backoff->expiry() > std::chrono::steady_clock::now();
          visit(key, load);
        }
      });
}

LoadSample Router::SampleLoad(const std::string& key) const {
  LoadSample s;
  auto it = deployments_.find(key);
  if (it == deployments_.end()) return s;
  const DeploymentEntry& d = it->second;
  for (const auto& p : d.queue) s.queued += p->finished ? 0 : 1;
  s.num_replicas = d.replicas.size();
  for (const auto& r : d.replicas) s.running.emplace_back(r.info.replica_id(), r.conn->in_flight());
  return s;
}

size_t Router::NumReplicas(const std::string& key) const {
  auto it = deployments_.find(key);
  return it == deployments_.end() ? 0 : it->second.replicas.size();
}

void Router::UpdateTargets(const std::string& key, const v1::DeploymentTargets& targets) {
  DeploymentEntry& d = deployments_[key];
  d.known = true;
  d.available = targets.is_available();
  d.max_queued_requests = targets.max_queued_requests() == 0 ? -1 : targets.max_queued_requests();
  std::vector<ReplicaEntry> next;
  for (const auto& r : targets.replicas()) {
    auto& conn = connections_[r.data_address()];
    if (!conn || conn->broken()) {
      conn = std::make_shared<ReplicaConnection>(executor_, r.data_address());
      conn->Probe();  // a new replica: learn its queue length (and connect) up front
    }
    next.push_back({r, conn});
  }
  // Drop connections no deployment references any more (in-flight requests finish first:
  // the connection object stays alive through its pending handlers).
  d.replicas = std::move(next);
  for (auto it = connections_.begin(); it != connections_.end();) {
    bool used = false;
    for (auto& [k, dep] : deployments_) {
      for (auto& r : dep.replicas) used |= r.conn == it->second;
    }
    if (used) {
      ++it;
      continue;
    }
    retiring_.push_back(std::move(it->second));
    it = connections_.erase(it);
  }
  PurgeRetiring();
  if (!d.available) {
    auto queue = std::move(d.queue);
    d.queue.clear();
    for (auto& p : queue) {
      RouteResult r;
      r.code = RouteResult::Code::kUnavailable;
      r.error = "Deployment '" + key + "' is unavailable.";
      p->Finish(std::move(r));
    }
  }
  if (metrics_) metrics_->OnTargets(key, targets);
  if (!d.available) return;
  d.backoff_attempt = 0;
  Drain(key);
}

void Router::PurgeRetiring() {
  for (auto it = retiring_.begin(); it != retiring_.end();) {
    if ((*it)->in_flight() == 0) {
      (*it)->Close();
      it = retiring_.erase(it);
    } else {
      ++it;
    }
  }
}

void Router::Cancel(uint64_t id) {
  auto it = live_.find(id);
  if (it == live_.end()) return;
  auto p = it->second.lock();
  if (!p || p->finished) return;
  if (auto conn = p->sent_to.lock()) {
    conn->Cancel(p->id);
  } else if (auto d = deployments_.find(p->key); d != deployments_.end()) {
    // Waiting for a replica: leave the queue now, so that it no longer counts against
    // max_queued_requests nor in the queued metric.
    auto& q = d->second.queue;
    q.erase(std::remove(q.begin(), q.end(), p), q.end());
  }
  RouteResult r;
  r.code = RouteResult::Code::kCancelled;
  r.error = "Request " + p->head.request_id() + " was cancelled.";
  p->Finish(std::move(r));  // a queued one is skipped by Drain
}

uint64_t Router::Route(const std::string& key, v1::RequestHead head, std::string body,
                       RouteCallback done) {
  DeploymentEntry& d = deployments_[key];
  if (d.known && !d.available) {
    RouteResult r;
    r.code = RouteResult::Code::kUnavailable;
    r.error = "Deployment '" + key + "' is unavailable.";
    done(std::move(r));
    return 0;
  }
  if (d.max_queued_requests >= 0 && static_cast<int>(d.queue.size()) >= d.max_queued_requests) {
    RouteResult r;
    r.code = RouteResult::Code::kBackPressure;
    r.error = "Request dropped due to backpressure (num_queued_requests=" +
              std::to_string(d.queue.size()) +
              ", max_queued_requests=" + std::to_string(d.max_queued_requests) + ").";
    spdlog::warn("[{}] {}", key, r.error);
    done(std::move(r));
    return 0;
  }
  if (serve_metrics_) serve_metrics_->OnRequest(key, head.route());
  auto p = std::make_shared<Pending>();
  p->id = next_id_++;
  if (serve_metrics_) p->created = std::chrono::steady_clock::now();
  p->key = key;
  p->live = &live_;
  live_[p->id] = p;
  uint64_t id = p->id;
  p->payload = rpc::EncodeEnvelope(head, body);
  p->head = std::move(head);
  if (!p->head.multiplexed_model_id().empty()) {
    auto t = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        match_timeout_ * std::uniform_real_distribution<double>(1.0, 2.0)(rng_));
    p->match_deadline = std::chrono::steady_clock::now() + t;
  }
  p->done = std::move(done);
  d.queue.push_back(std::move(p));
  if (metrics_ && d.replicas.empty()) metrics_->OnQueuedAtZero(key);  // cold start
  Drain(key);
  return id;
}

Router::ReplicaEntry* Router::PickAmong(DeploymentEntry& d, size_t n, const size_t* idx) {
  if (n == 0) return nullptr;
  size_t i = std::uniform_int_distribution<size_t>(0, n - 1)(rng_);
  size_t j = i;
  if (n > 1) {
    j = std::uniform_int_distribution<size_t>(0, n - 2)(rng_);
    if (j >= i) ++j;
  }
  ReplicaEntry* a = &d.replicas[idx ? idx[i] : i];
  ReplicaEntry* b = &d.replicas[idx ? idx[j] : j];
  if (a->conn->broken() != b->conn->broken()) {  // a reachable replica beats an unreachable one
    ReplicaEntry* ok = a->conn->broken() ? b : a;
    return ok->conn->Load() >= ok->info.max_ongoing_requests() ? nullptr : ok;
  }
  int la = a->conn->Load(), lb = b->conn->Load();
  ReplicaEntry* best = la <= lb ? a : b;
  if (std::min(la, lb) >= best->info.max_ongoing_requests()) return nullptr;
  return best;
}

Router::ReplicaEntry* Router::Pick(DeploymentEntry& d) {
  size_t n = d.replicas.size();
  size_t local_count = 0, reachable = 0;
  for (const auto& r : d.replicas) {
    local_count += !local_node_id_.empty() && r.info.node_id() == local_node_id_;
    reachable += !r.conn->broken();
  }
  if ((local_count == 0 || local_count == n) && (reachable == 0 || reachable == n)) {
    return PickAmong(d, n, nullptr);  // the common case: nothing to prefer
  }
  // Preference: reachable replicas on this node, then reachable ones anywhere; while none is
  // reachable, every replica (a request sent to one retries its connection).
  std::vector<size_t> idx;
  idx.reserve(n);
  auto among = [&](bool local_only) -> ReplicaEntry* {
    idx.clear();
    for (size_t i = 0; i < n; ++i) {
      const ReplicaEntry& r = d.replicas[i];
      if (reachable > 0 && r.conn->broken()) continue;
      if (local_only && r.info.node_id() != local_node_id_) continue;
      idx.push_back(i);
    }
    return PickAmong(d, idx.size(), idx.data());
  };
  if (local_count > 0 && local_count < n) {
    if (ReplicaEntry* r = among(/*local_only=*/true)) return r;
  }
  return among(/*local_only=*/false);
}

void Router::Drain(const std::string& key) {
  DeploymentEntry& d = deployments_[key];
  // Every waiting request gets a chance, oldest first: one waiting for its model's replica
  // does not hold up the others. After a miss, later requests of the same kind (no model, or
  // the same model) wait without trying.
  std::deque<std::shared_ptr<Pending>> queue;
  queue.swap(d.queue);
  std::deque<std::shared_ptr<Pending>> waiting;
  bool plain_full = false;
  std::set<std::string> models_waiting;
  for (auto& p : queue) {
    if (p->finished) continue;
    const std::string& model = model_aware_ ? p->head.multiplexed_model_id() : std::string();
    bool skip = model.empty() ? plain_full : models_waiting.count(model) > 0;
    ReplicaEntry* replica = skip ? nullptr : PickFor(d, *p);
    if (replica == nullptr) {
      if (model.empty()) {
        plain_full = true;
      } else {
        models_waiting.insert(model);
      }
      waiting.push_back(std::move(p));
      continue;
    }
    Dispatch(key, std::move(p), *replica);
  }
  // Requests put back meanwhile (a replica lost before accepting) stay ahead.
  for (auto& p : waiting) d.queue.push_back(std::move(p));
  if (!d.queue.empty() && !d.replicas.empty()) {
    ScheduleRetry(key);  // all full or waiting for a model; else wait for a broadcast
  }
}

void Router::ScheduleRetry(const std::string& key) {
  DeploymentEntry& d = deployments_[key];
  if (!d.backoff) d.backoff = std::make_unique<asio::steady_timer>(executor_);
  if (d.backoff->expiry() > std::chrono::steady_clock::now()) return;  // already armed
  double delay = std::min(0.025 * (1 << std::min(d.backoff_attempt, 5)), 0.5);
  ++d.backoff_attempt;
  d.backoff->expires_after(std::chrono::microseconds(static_cast<int64_t>(delay * 1e6)));
  d.backoff->async_wait([this, key](boost::system::error_code ec) {
    if (!ec) Drain(key);
  });
}

void Router::Dispatch(const std::string& key, std::shared_ptr<Pending> p, ReplicaEntry& replica) {
  auto conn = replica.conn;
  std::string replica_id = replica.info.replica_id();
  // The stream of this request once its head arrived (frames after it are chunks).
  auto stream = std::make_shared<std::shared_ptr<rpc::ChunkQueue>>();
  std::weak_ptr<ReplicaConnection> weak_conn = conn;
  uint64_t id = p->id;
  p->sent_to = conn;
  if (serve_metrics_ && !p->dispatched) {
    serve_metrics_->OnAssigned(key, std::chrono::steady_clock::now() - p->created);
  }
  p->dispatched = true;
  conn->Send(p->id, p->payload, [this, key, p, replica_id, stream, weak_conn, id](rpc::Frame* f) {
    if (f != nullptr && f->type == FrameType::kAccepted) {
      p->started = true;
      deployments_[key].backoff_attempt = 0;  // a replica took it: retries start fast again
      return;
    }
    if (p->finished && !*stream) {
      // Cancelled while in flight: the late answer is dropped.
      if (f == nullptr || f->type != FrameType::kChunk) Drain(key);
      return;
    }
    if (*stream) {
      rpc::ChunkQueue& q = **stream;
      if (f == nullptr) {
        q.Finish("lost connection to replica " + replica_id);
      } else if (f->type == FrameType::kChunk) {
        q.Push(std::move(f->payload));
      } else if (f->type == FrameType::kEnd) {
        q.trailer = std::move(f->payload);
        q.Finish();
      } else if (f->type == FrameType::kError) {
        v1::ResponseHead err;
        std::string_view ignored;
        rpc::DecodeEnvelope(f->payload, err, ignored);
        q.Finish(err.error_type() + ": " + err.error_message());
      }
      if (f == nullptr || f->type != FrameType::kChunk) {
        if (!retiring_.empty()) PurgeRetiring();
        Drain(key);
      }
      return;
    }
    if (f == nullptr && p->started) {
      // It ran (or was running) there: running it again elsewhere could repeat its effects.
      RouteResult r;
      r.code = RouteResult::Code::kReplicaDied;
      r.error = "Replica " + replica_id + " died while handling request " +
                p->head.request_id() + ".";
      spdlog::warn("{}", r.error);
      p->Finish(std::move(r));
      if (!retiring_.empty()) PurgeRetiring();
      Drain(key);
      return;
    }
    if (f == nullptr) {
      // Connection lost before the replica accepted it: it never started; route it again.
      spdlog::warn("Lost connection to replica {} before it accepted request {}; retrying.",
                   replica_id, p->head.request_id());
      p->sent_to.reset();
      deployments_[key].queue.push_front(p);
      ScheduleRetry(key);
      return;
    }
    RouteResult r;
    std::string_view body;
    if (!rpc::DecodeEnvelope(f->payload, r.head, body)) {
      r.code = RouteResult::Code::kReplicaDied;
      r.error = "malformed response from replica " + replica_id;
      p->Finish(std::move(r));
      return;
    }
    if (!r.head.accepted()) {
      p->sent_to.reset();
      deployments_[key].queue.push_front(p);  // rejected: at capacity; try another replica
      ScheduleRetry(key);
      return;
    }
    if (f->type == FrameType::kResponseHead) {
      *stream = std::make_shared<rpc::ChunkQueue>(executor_);
      (*stream)->on_cancel = [weak_conn, id] {
        if (auto c = weak_conn.lock()) c->Cancel(id);
      };
      (*stream)->credit_batch = rpc::kStreamCreditBatch;
      (*stream)->on_consumed = [weak_conn, id](size_t bytes) {
        if (auto c = weak_conn.lock()) c->Credit(id, bytes);
      };
      r.stream = *stream;
      p->Finish(std::move(r));
      return;
    }
    r.body.assign(body.data(), body.size());
    p->Finish(std::move(r));
    if (!retiring_.empty()) PurgeRetiring();
    Drain(key);  // a slot freed up
  });
}

}  // namespace serve::router

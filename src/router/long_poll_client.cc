// LongPollClient: long-polls the controller for target updates on its own thread.

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <boost/asio/post.hpp>

#include "router/router.h"
#include "rpc/grpc_util.h"
#include "serve/v1/controller.grpc.pb.h"

namespace serve::router {
namespace asio = boost::asio;

struct LongPollClient::State {
  std::string address;
  asio::any_io_executor executor;
  OnUpdate on_update;
  std::mutex mu;
  std::map<std::string, int64_t> keys;
  bool stop = false;
  grpc::ClientContext* active = nullptr;
  std::thread thread;
};

LongPollClient::LongPollClient(std::string controller_address, asio::any_io_executor executor,
                               OnUpdate on_update)
    : state_(std::make_shared<State>()) {
  state_->address = std::move(controller_address);
  state_->executor = std::move(executor);
  state_->on_update = std::move(on_update);
  state_->thread = std::thread([s = state_] {
    auto stub = v1::Controller::NewStub(rpc::ChannelTo(s->address));
    int failures = 0;
    while (true) {
      v1::ListenRequest req;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
      {
        std::lock_guard lock(s->mu);
        if (s->stop) return;
        for (auto& [k, v] : s->keys) (*req.mutable_keys())[k] = v;
        s->active = &ctx;
      }
      v1::ListenReply reply;
      grpc::Status st = stub->ListenForChange(&ctx, req, &reply);
      {
        std::lock_guard lock(s->mu);
        s->active = nullptr;
        if (s->stop) return;
        if (st.ok()) {
          for (const auto& u : reply.updates()) {
            auto it = s->keys.find(u.key());
            if (it != s->keys.end()) it->second = u.snapshot_id();
          }
        }
      }
      if (st.error_code() == grpc::StatusCode::CANCELLED) continue;  // new key watched
      if (!st.ok()) {
        // Controller down or restarting: keep the last snapshot and retry with backoff.
        ++failures;
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 * failures, 1000)));
        continue;
      }
      failures = 0;
      for (const auto& u : reply.updates()) {
        asio::post(s->executor, [s, u] { s->on_update(u); });
      }
    }
  });
}

LongPollClient::~LongPollClient() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
    if (state_->active) state_->active->TryCancel();
  }
  state_->thread.join();
}

void LongPollClient::Watch(const std::string& key) {
  std::lock_guard lock(state_->mu);
  if (state_->keys.emplace(key, -1).second && state_->active) state_->active->TryCancel();
}

}  // namespace serve::router

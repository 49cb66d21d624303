// serve::testing (include/serve/testing.h): an application run inside this process by an
// sdk::LocalRuntime.

#include <serve/testing.h>

#include <atomic>
#include <functional>
#include <set>
#include <stdexcept>
#include <utility>

#include "sdk/local_runtime.h"

namespace serve::testing {

namespace {
// One LocalApp at a time: the handle runtime of a process is a single slot.
std::atomic<bool> g_running{false};
}  // namespace

struct LocalApp::Impl {
  std::shared_ptr<sdk::LocalRuntime> runtime;
  LocalOptions options;
  std::string ingress;

  sdk::LocalDeployment& Get(const std::string& deployment) const {
    sdk::LocalDeployment* d = runtime->Find(deployment);
    if (d == nullptr) {
      std::string known;
      for (const auto& n : runtime->Names()) known += (known.empty() ? "" : ", ") + n;
      throw std::invalid_argument("application '" + options.name + "' has no deployment '" +
                                  deployment + "' (deployments: " + known + ")");
    }
    return *d;
  }
};

LocalApp::LocalApp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LocalApp::LocalApp(LocalApp&&) noexcept = default;

LocalApp& LocalApp::operator=(LocalApp&& other) noexcept {
  if (this != &other) {
    LocalApp old(std::move(*this));  // stops the application this one ran
    impl_ = std::move(other.impl_);
  }
  return *this;
}

LocalApp::~LocalApp() {
  if (!impl_) return;
  impl_->runtime->Shutdown(impl_->options.shutdown_timeout_s);
  sdk::SetHandleRuntime(nullptr);
  g_running.store(false);
}

DeploymentHandle LocalApp::ingress() const {
  return DeploymentHandle(impl_->ingress, impl_->options.name);
}

DeploymentHandle LocalApp::handle(const std::string& deployment) const {
  impl_->Get(deployment);
  return DeploymentHandle(deployment, impl_->options.name);
}

std::vector<std::string> LocalApp::deployments() const {
  std::vector<std::string> names = {impl_->ingress};
  for (auto& n : impl_->runtime->Names()) {
    if (n != impl_->ingress) names.push_back(n);
  }
  return names;
}

const std::string& LocalApp::name() const { return impl_->options.name; }

DeploymentResponse<HttpResponse> LocalApp::http(HttpRequest request) const {
  auto state = std::make_shared<detail::ResponseState>();
  impl_->runtime->CallHttp(std::move(request), state);
  return DeploymentResponse<HttpResponse>(std::move(state));
}

void LocalApp::reconfigure(const std::string& deployment, const Json& user_config) const {
  sdk::LocalDeployment& d = impl_->Get(deployment);
  impl_->runtime->RunUserCode(d, [&] { d.instance->Reconfigure(user_config); });
}

void LocalApp::check_health(const std::string& deployment) const {
  sdk::LocalDeployment& d = impl_->Get(deployment);
  impl_->runtime->RunUserCode(d, [&] { d.instance->CheckHealth(); });
}

LocalApp run_local(const Application& app, const LocalOptions& options) {
  if (app.ingress() == nullptr) {
    throw std::invalid_argument("run_local: empty application (nothing was bound)");
  }
  if (options.name.empty()) throw std::invalid_argument("LocalOptions.name must not be empty");
  (void)app.ToJson();  // the checks of a deploy: distinct names
  if (g_running.exchange(true)) {
    throw std::logic_error(
        "run_local: another serve::testing::LocalApp runs in this process; destroy it first");
  }
  auto impl = std::make_unique<LocalApp::Impl>();
  impl->runtime = std::make_shared<sdk::LocalRuntime>(options.name);
  impl->options = options;
  impl->ingress = *app.ingress()->options.name;
  impl->runtime->SetIngress(impl->ingress);
  sdk::SetHandleRuntime(impl->runtime.get());  // constructors may call their callees
  LocalApp local(std::move(impl));
  // Callees first, each once (a deployment bound twice is the same deployment).
  std::set<const detail::AppNode*> built;
  std::function<void(const detail::AppNode&)> build = [&](const detail::AppNode& node) {
    if (!built.insert(&node).second) return;
    for (const auto& child : node.children) build(*child);
    local.impl_->runtime->Add(node);
  };
  build(*app.ingress());  // on failure `local` stops what was built
  return local;
}

}  // namespace serve::testing

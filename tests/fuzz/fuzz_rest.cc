// Fuzzes the controller's REST handler (controller/rest_api.h) behind a fake ControllerApi.
// Input: first line "<METHOD> <target>", second line flags for the fake (a '1' at index 0 makes
// ApplyConfig fail, at index 1 makes DrainNode answer NotFound, at index 2 makes the metrics
// source fail), the rest is the body. Checks: the status is one the API documents, every reply
// has a content type, and the fake is called only on the routes that call it.

#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "controller/rest_api.h"
#include "fuzz_check.h"

namespace {
class FakeControllerApi : public serve::controller::ControllerApi {
 public:
  std::string flags;
  int calls = 0;
  nlohmann::json Details(const std::string& api_type) override {
    ++calls;
    CHECK(api_type.empty() || api_type == "imperative" || api_type == "declarative");
    return {{"applications", nlohmann::json::object()}};
  }
  absl::Status ApplyConfig(const serve::config::ServeDeployConfig& config) override {
    ++calls;
    CHECK(!config.applications.empty() || config.applications.empty());
    return Flag(0) ? absl::InvalidArgumentError("rejected") : absl::OkStatus();
  }
  void DeleteAllApplications() override { ++calls; }
  std::string SessionName() override { return "session"; }
  absl::Status DrainNode(const std::string& node_id, double deadline_s) override {
    ++calls;
    CHECK(!node_id.empty() && deadline_s >= 0);
    return Flag(1) ? absl::NotFoundError("no node " + node_id) : absl::OkStatus();
  }
  bool Flag(size_t i) const { return flags.size() > i && flags[i] == '1'; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string_view first = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  nl = in.find('\n');
  FakeControllerApi api;
  api.flags = std::string(in.substr(0, nl));
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);

  serve::rpc::HttpServerRequest req;
  size_t sp = first.find(' ');
  req.method = std::string(first.substr(0, sp));
  req.target = sp == std::string_view::npos ? "/" : std::string(first.substr(sp + 1));
  req.body = std::string(in);
  serve::controller::MetricsSource metrics;
  if (!api.Flag(3)) {
    metrics = [&api]() -> absl::StatusOr<std::string> {
      if (api.Flag(2)) return absl::UnavailableError("node down");
      return std::string("serve_up 1\n");
    };
  }
  serve::rpc::HttpServerResponse resp = serve::controller::HandleRest(api, req, metrics);
  static const std::set<int> kStatuses = {200, 400, 404, 405, 409, 503};
  CHECK(kStatuses.count(resp.status) == 1);
  bool has_type = false;
  for (const auto& [k, v] : resp.headers) has_type |= k == "content-type" && !v.empty();
  CHECK(has_type);
  CHECK(api.calls <= 1);
  return 0;
}

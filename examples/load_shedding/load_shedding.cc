// Load shedding ("Best practices in production"): a slow model with max_ongoing_requests=2
// per replica and max_queued_requests=2 per caller. Beyond what the replica can run plus what
// may wait, requests are rejected at once with HTTP 503 instead of queueing without bound:
//   serve run load_shedding:app
//   for i in $(seq 10); do curl -s -o /dev/null -w '%{http_code}\n' localhost:8000/ & done; wait
#include <serve/serve.h>

#include <chrono>
#include <thread>

class SlowModel {
 public:
  std::string operator()(const serve::HttpRequest& request) {
    int ms = std::stoi(request.query("ms", "1000"));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return "done";
  }
};
SERVE_DEPLOYMENT(SlowModel);

SERVE_APP(app, serve::deployment<SlowModel>({.max_ongoing_requests = 2, .max_queued_requests = 2})
                   .bind());

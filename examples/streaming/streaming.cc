// Streaming responses ("Set Up FastAPI and HTTP" → streaming): numbers sent as they are made.
//   serve run streaming:app      curl -N 'localhost:8000/?count=5&interval_ms=200'
// When the client disconnects, the stream stops at the next co_yield.
#include <serve/serve.h>

#include <atomic>
#include <chrono>
#include <thread>

class Counter {
 public:
  serve::Stream<std::string> operator()(serve::HttpRequest request) {
    int count = std::stoi(request.query("count", "10"));
    int interval_ms = std::stoi(request.query("interval_ms", "100"));
    for (int i = 0; i < count; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
      ++produced_;
      co_yield std::to_string(i) + "\n";
    }
  }
  // How many items were produced in total (shows that a cancelled stream stopped early).
  serve::HttpResponse stats() { return serve::HttpResponse::json({{"produced", produced_.load()}}); }

 private:
  std::atomic<int> produced_{0};
};
SERVE_DEPLOYMENT(Counter);

SERVE_APP(app, serve::deployment<Counter>().bind());

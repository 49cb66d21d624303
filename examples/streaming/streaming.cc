// Streaming responses ("Set Up FastAPI and HTTP" → streaming): numbers sent as they are made.
//   serve run streaming:app      curl -N 'localhost:8000/?count=5&interval_ms=200'
//   serve run streaming:relay    curl -N 'localhost:8000/?count=5'   -> 0 2 4 6 8, one a line
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
  // The same numbers as values, for other deployments (see Relay).
  serve::Stream<int> numbers(int count) {
    for (int i = 0; i < count && !serve::is_request_cancelled(); ++i) co_yield i;
  }
  // How many items were produced in total (shows that a cancelled stream stopped early).
  serve::HttpResponse stats() { return serve::HttpResponse::json({{"produced", produced_.load()}}); }

 private:
  std::atomic<int> produced_{0};
};
SERVE_DEPLOYMENT(Counter, SERVE_METHOD(&Counter::numbers), SERVE_METHOD(&Counter::stats));

SERVE_APP(app, serve::deployment<Counter>().bind());

// Streams another deployment's stream: a typed handle call of a Stream<int> method gives a
// ResponseStream<int>, read item by item as the Counter yields them. A generator cannot
// co_await, so it blocks on next() (with a timeout) between items.
class Relay {
 public:
  explicit Relay(serve::Handle<Counter> counter) : counter_(std::move(counter)) {}
  serve::Stream<std::string> operator()(serve::HttpRequest request) {
    serve::ResponseStream<int> numbers =
        counter_.call<&Counter::numbers>(std::stoi(request.query("count", "10")));
    while (std::optional<int> n = numbers.next(std::chrono::seconds(10))) {
      co_yield std::to_string(2 * *n) + "\n";
    }
  }

 private:
  serve::Handle<Counter> counter_;
};
SERVE_DEPLOYMENT(Relay);

SERVE_APP(relay, serve::deployment<Relay>().bind(serve::deployment<Counter>().bind()));

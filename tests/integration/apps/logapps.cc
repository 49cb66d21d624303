// A deployment that writes user log lines, for the logging integration tests.
#include <serve/serve.h>

#include <unistd.h>

// GET /?word=W logs "chatty says W" (INFO) and "chatty debug W" (DEBUG) through serve::logger().
class Chatty {
 public:
  serve::Json operator()(const serve::HttpRequest& r) {
    serve::logger().info("chatty says " + r.query("word"));
    serve::logger().debug("chatty debug " + r.query("word"));
    return {{"pid", static_cast<int>(::getpid())}};
  }
};
SERVE_DEPLOYMENT(Chatty);
SERVE_APP(chatty_app, serve::deployment<Chatty>().num_replicas(2).bind());

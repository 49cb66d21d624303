// Applications for the first-hour tests (test_first_hour.py): builders that fail the ways a
// new user's builders do.
#include <serve/serve.h>

#include <cstdio>
#include <cstdlib>
#include <string>

class Plain {
 public:
  std::string operator()(const serve::HttpRequest&) { return "plain"; }
};
SERVE_DEPLOYMENT(Plain);

// Exits the build process before it can report a result (as a crashing builder does).
serve::Application exiting_builder(const serve::Args&) {
  std::fprintf(stderr, "exiting_builder: giving up without a result\n");
  std::fflush(stderr);
  std::_Exit(3);
}
SERVE_APP_BUILDER(exiting_builder);

// Parses an integer argument the way user code does: `count=abc` throws from std::stoi.
serve::Application counting_builder(const serve::Args& args) {
  return serve::deployment<Plain>().num_replicas(std::stoi(args.get("count", "1"))).bind();
}
SERVE_APP_BUILDER(counting_builder);

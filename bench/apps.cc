// Deployments served by the proxy benchmarks (bench/run.sh):
//   serve run bench_apps:noop --app-dir build/bench      GET / -> 200 "ok"
#include <serve/serve.h>

class Noop {
 public:
  std::string operator()(const serve::HttpRequest&) { return "ok"; }
};
SERVE_DEPLOYMENT(Noop);
SERVE_APP(noop, serve::deployment<Noop>().bind());

// Streaming benchmark app (bench/run.sh), built only when the SDK has serve::Stream:
//   serve run bench_stream:app --app-dir build/bench
//   GET / -> 50 chunks of 20 bytes, each yielded on its own (like beast_backend's /stream)
#include <serve/serve.h>
#include <serve/stream.h>

#include <cstdio>
#include <string>

class ChunkStream {
 public:
  serve::Stream<std::string> operator()(serve::HttpRequest) {
    for (int i = 0; i < 50; ++i) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "chunk %02d/%02d .......\n", i, 50);
      co_yield std::string(buf, 20);
    }
  }
};
SERVE_DEPLOYMENT(ChunkStream);
SERVE_APP(app, serve::deployment<ChunkStream>().bind());

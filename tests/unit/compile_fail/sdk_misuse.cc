// Misuses of the SDK that must not compile, one per macro; the build runs each with
// -fsyntax-only and expects the SDK's own diagnostic (tests/unit/CMakeLists.txt). Without a
// macro the file compiles: the same code, used correctly.
#include <serve/serve.h>

class Translator {
 public:
  std::string translate(const std::string& text) { return text; }
  serve::Stream<int> count(int n) {
    for (int i = 0; i < n; ++i) {
#ifdef SERVE_MISUSE_STREAM_CO_AWAIT
      co_await serve::sleep_for(std::chrono::milliseconds(1));
#endif
      co_yield i;
    }
  }
};
SERVE_DEPLOYMENT(Translator, SERVE_METHOD(&Translator::translate), SERVE_METHOD(&Translator::count));

class Other {
 public:
  int f() { return 1; }
};

void Use(const serve::Handle<Translator>& h) {
#if defined(SERVE_MISUSE_HANDLE_ARGUMENTS)
  (void)h.call<&Translator::translate>(42);  // translate takes a string
#elif defined(SERVE_MISUSE_HANDLE_FOREIGN_METHOD)
  (void)h.call<&Other::f>();
#else
  (void)h.call<&Translator::translate>("text");
  (void)h.call<&Translator::count>(3);
#endif
}

#pragma once

// CHECK(cond): a fuzz target's invariant; on failure prints it and aborts (libFuzzer then
// saves the input as a crash).

#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

// The check harness of the host tests in tests/cpp/: CHECK(cond, printf-args) counts passes and
// failures (printing the first 20 failures), report(name) prints the tally and gives main's exit
// status.
#pragma once
#include <cstdio>

static int g_passed = 0, g_failed = 0;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (cond) {                                                                 \
      ++g_passed;                                                               \
    } else if (++g_failed <= 20) {                                              \
      std::printf("CHECK failed (%s:%d): %s: ", __FILE__, __LINE__, #cond);     \
      std::printf(__VA_ARGS__);                                                 \
      std::printf("\n");                                                        \
    }                                                                           \
  } while (0)

static int report(const char* name) {
  std::printf("%s: %d passed, %d failed\n", name, g_passed, g_failed);
  return g_failed ? 1 : 0;
}

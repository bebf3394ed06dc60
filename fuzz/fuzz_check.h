// Require(cond): the fuzz targets' property check. On failure it names the
// property and its line, then aborts, so a crash input explains itself.
#ifndef MKD_FUZZ_FUZZ_CHECK_H_
#define MKD_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define Require(ok)                                                                  \
  do {                                                                               \
    if (!(ok)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #ok); \
      std::abort();                                                                  \
    }                                                                                \
  } while (0)

#endif  // MKD_FUZZ_FUZZ_CHECK_H_

// check.h — the few lines every C test shares: named checks that print what
// they expected and what they got, and the closing "N passed, N failed" line.
#include <stdio.h>
#include <stdlib.h>

static int checks_passed, checks_failed;

#define CHECK(cond, ...) do { \
    if (cond) checks_passed++; \
    else { checks_failed++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

// Loud skip for tests whose data is absent (../shared is not in a user's clone).
#define SKIP(...) do { fprintf(stderr, "SKIP: "); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } while (0)

static int check_summary(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, checks_passed, checks_failed);
    return checks_failed ? 1 : 0;
}

// A runq checkpoint ready to run cache_len positions on n_threads: runq's
// main without the adapter and the memory plan. (Include after runq.c.)
static void build_transformer(Transformer *t, const char *path, int cache_len, int n_threads) {
    open_checkpoint(t, path);
    prepare_run(t, cache_len, n_threads);
}

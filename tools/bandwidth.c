/*
bandwidth.c — the machine's memory read bandwidth, the ceiling of decoding:
every generated token streams all the weights from DRAM once, so
tok/s <= bandwidth / bytes of weights read per token (tools/bench prints this).

Each of T threads streams its own slice of one buffer far larger than the
caches (default 1 GiB), summing 64-bit words into independent accumulators (the
compiler turns the loop into vector loads; the sums keep it from being
optimized away). Pages are written first, so no page fault is timed. For each
thread count 1..T the best of several passes is reported, as STREAM does:
what the memory can deliver, not an average disturbed by other processes.

    cc -O3 -o build/bandwidth tools/bandwidth.c -lpthread
    build/bandwidth [-T threads] [-m MiB] [-p passes] [--json]
*/

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const uint64_t *words;     // this thread's slice
    size_t count;
    uint64_t sum;              // published so the reads are not dead code
    pthread_barrier_t *start;
} Slice;

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Eight accumulators: no dependency chain limits the loads.
static void *stream_read(void *raw) {
    Slice *s = raw;
    uint64_t a[8] = { 0 };
    pthread_barrier_wait(s->start);
    for (size_t i = 0; i + 8 <= s->count; i += 8)
        for (int k = 0; k < 8; k++) a[k] += s->words[i + k];
    s->sum = a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
    pthread_barrier_wait(s->start);
    return NULL;
}

// One pass: n_threads threads read the whole buffer once; returns GB/s (1e9 bytes).
static double measure(const uint64_t *buffer, size_t words, int n_threads, uint64_t *checksum) {
    pthread_t threads[256];
    Slice slices[256];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n_threads + 1);
    size_t per_thread = words / (size_t)n_threads / 8 * 8;
    for (int t = 0; t < n_threads; t++) {
        slices[t] = (Slice){ buffer + (size_t)t * per_thread, per_thread, 0, &start };
        if (pthread_create(&threads[t], NULL, stream_read, &slices[t]) != 0) {
            fprintf(stderr, "bandwidth: cannot create thread %d: %s\n", t, strerror(errno));
            exit(EXIT_FAILURE);
        }
    }
    pthread_barrier_wait(&start);           // all threads ready: go
    double begin = now_seconds();
    pthread_barrier_wait(&start);           // all threads done
    double seconds = now_seconds() - begin;
    for (int t = 0; t < n_threads; t++) {
        pthread_join(threads[t], NULL);
        *checksum ^= slices[t].sum;
    }
    pthread_barrier_destroy(&start);
    return (double)(per_thread * (size_t)n_threads * sizeof(uint64_t)) / seconds / 1e9;
}

static long parse_flag(const char *flag, const char *text, long min, long max) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "bandwidth: %s expects a whole number from %ld to %ld, got '%s'\n", flag, min, max, text);
        exit(EXIT_FAILURE);
    }
    return v;
}

int main(int argc, char **argv) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int max_threads = online > 0 ? (int)online : 1, passes = 5, json = 0;
    size_t mebibytes = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "-T") == 0 && i + 1 < argc) max_threads = (int)parse_flag("-T", argv[++i], 1, 256);
        else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) mebibytes = (size_t)parse_flag("-m", argv[++i], 64, 1 << 20);
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) passes = (int)parse_flag("-p", argv[++i], 1, 1000);
        else {
            fprintf(stderr, "Usage: bandwidth [-T threads (default: online cores)] [-m MiB (1024)] [-p passes (5)] [--json]\n");
            return EXIT_FAILURE;
        }
    }
    size_t bytes = mebibytes << 20, words = bytes / sizeof(uint64_t);
    uint64_t *buffer = NULL;
    if (posix_memalign((void **)&buffer, 4096, bytes) != 0) {
        fprintf(stderr, "bandwidth: cannot allocate %zu MiB\n", mebibytes);
        return EXIT_FAILURE;
    }
    for (size_t i = 0; i < words; i++) buffer[i] = i * 0x9E3779B97F4A7C15ull;   // fault every page in now

    uint64_t checksum = 0;
    if (json) printf("{\"buffer_mib\": %zu, \"passes\": %d, \"read_gbps\": [", mebibytes, passes);
    for (int t = 1; t <= max_threads; t++) {
        double best = 0;
        for (int p = 0; p < passes; p++) {
            double gbps = measure(buffer, words, t, &checksum);
            if (gbps > best) best = gbps;
        }
        if (json) printf("%s{\"threads\": %d, \"gbps\": %.2f}", t > 1 ? ", " : "", t, best);
        else printf("threads=%d read_GBps=%.2f\n", t, best);
        fflush(stdout);
    }
    if (json) printf("]}\n");
    fprintf(stderr, "bandwidth: checksum %016llx (ignore; keeps the reads alive)\n", (unsigned long long)checksum);
    free(buffer);
    return 0;
}

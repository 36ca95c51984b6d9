// replay.c — a main for the fuzz targets without libFuzzer: runs the target
// once on each file named, so plain cc builds them for make test, which
// replays the regression inputs and the seed corpora (test_fuzz_regressions.sh).
// A crash is a crash; a rejected input returns as the fuzzer sees it.
// It is not a fuzzer: it finds nothing new, it only replays.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static uint8_t *read_input(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    uint8_t *data = NULL;
    size_t capacity = 0;
    *size = 0;
    for (;;) {
        if (*size == capacity && !(data = realloc(data, capacity = 2 * capacity + 4096))) exit(2);
        size_t n = fread(data + *size, 1, capacity - *size, f);
        if (n == 0) break;
        *size += n;
    }
    fclose(f);
    // an exact-size copy, as libFuzzer passes it: a read past the end is a read past the input
    uint8_t *exact = malloc(*size ? *size : 1);
    for (size_t i = 0; i < *size; i++) exact[i] = data[i];
    free(data);
    return exact;
}

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        size_t size;
        uint8_t *data = read_input(argv[i], &size);
        LLVMFuzzerTestOneInput(data, size);
        free(data);
    }
    return 0;
}

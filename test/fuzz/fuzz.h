// fuzz.h — what every libFuzzer target in test/fuzz/ shares. Include it
// instead of export.c (it includes export.c, hence runq.c).
//
// The parsers reject bad input with die(), which prints and exits: right for
// a program, fatal to a fuzzer, which runs millions of inputs in one process.
// Built with -DFUZZING, die() jumps back to the harness instead (runq.c), and
// the harness then releases what the parser had allocated or mapped before it
// gave up, as exit would have: every calloc/malloc/realloc/strdup and mmap
// made in runq.c, export.c and the harness is tracked here. After an
// accepted input the harness frees what it owns; anything still tracked then
// is a leak, and FUZZ_END aborts so that libFuzzer records the input.
//
// A target is written as
//     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
//         FUZZ_BEGIN;          // a rejection resumes after FUZZ_END
//         ...parse, use, free...
//         FUZZ_END;
//         return 0;
//     }
// It is not a fuzz target: each test/fuzz/fuzz_NAME.c is one.

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// ---- tracked allocations and mappings (plain arrays: an input makes few)

static void **fuzz_blocks;
static size_t fuzz_n_blocks, fuzz_block_capacity;
static struct { void *address; size_t size; } fuzz_maps[64];
static size_t fuzz_n_maps;

static void fuzz_track(void *p) {
    if (!p) return;
    if (fuzz_n_blocks == fuzz_block_capacity) {
        fuzz_block_capacity = fuzz_block_capacity ? 2 * fuzz_block_capacity : 1024;
        fuzz_blocks = realloc(fuzz_blocks, fuzz_block_capacity * sizeof *fuzz_blocks);
        if (!fuzz_blocks) abort();
    }
    fuzz_blocks[fuzz_n_blocks++] = p;
}

static void fuzz_untrack(void *p) {
    for (size_t i = fuzz_n_blocks; i-- > 0;)   // the newest first: most frees are of recent blocks
        if (fuzz_blocks[i] == p) { fuzz_blocks[i] = fuzz_blocks[--fuzz_n_blocks]; return; }
}

static void *fuzz_calloc(size_t count, size_t size) { void *p = calloc(count, size); fuzz_track(p); return p; }
static void *fuzz_malloc(size_t size) { void *p = malloc(size); fuzz_track(p); return p; }
static char *fuzz_strdup(const char *s) { char *p = strdup(s); fuzz_track(p); return p; }
static void fuzz_free(void *p) { if (p) fuzz_untrack(p); free(p); }
static void *fuzz_realloc(void *p, size_t size) {
    if (p) fuzz_untrack(p);
    void *q = realloc(p, size);
    fuzz_track(q ? q : p);   // a failed realloc leaves p allocated
    return q;
}

static void *fuzz_mmap(void *address, size_t size, int protection, int flags, int fd, off_t offset) {
    void *p = mmap(address, size, protection, flags, fd, offset);
    if (p != MAP_FAILED) {
        if (fuzz_n_maps == sizeof fuzz_maps / sizeof fuzz_maps[0]) abort();
        fuzz_maps[fuzz_n_maps].address = p;
        fuzz_maps[fuzz_n_maps++].size = size;
    }
    return p;
}

static int fuzz_munmap(void *address, size_t size) {
    for (size_t i = 0; i < fuzz_n_maps; i++)
        if (fuzz_maps[i].address == address) { fuzz_maps[i] = fuzz_maps[--fuzz_n_maps]; break; }
    return munmap(address, size);
}

// What a harness builds once, in LLVMFuzzerInitialize, lives as long as the process.
static void fuzz_forget_tracked(void) { fuzz_n_blocks = fuzz_n_maps = 0; }

// After a rejection: what exit would have released.
static void fuzz_release_all(void) {
    for (size_t i = 0; i < fuzz_n_blocks; i++) free(fuzz_blocks[i]);
    for (size_t i = 0; i < fuzz_n_maps; i++) munmap(fuzz_maps[i].address, fuzz_maps[i].size);
    fuzz_n_blocks = fuzz_n_maps = 0;
}

// After an accepted input the harness has freed everything: anything left leaked.
static void fuzz_check_released(void) {
    if (fuzz_n_blocks == 0 && fuzz_n_maps == 0) return;
    fprintf(stderr, "fuzz: %zu allocations and %zu mappings outlive an accepted input (a leak)\n", fuzz_n_blocks,
            fuzz_n_maps);
    abort();
}

// The copy of the input a harness hands to a parser, made and freed outside
// the tracking (it outlives FUZZ_END): 64-byte aligned as a mapped file is,
// exactly size bytes so that AddressSanitizer sees a read past the input as
// one, or with a NUL after them for the parsers that want one (JSON, prompts).
static uint8_t *fuzz_copy_input(const uint8_t *data, size_t size, int nul_terminated) {
    void *copy = NULL;
    if (posix_memalign(&copy, 64, size + (nul_terminated || size == 0)) != 0) abort();
    memcpy(copy, data, size);
    if (nul_terminated) ((uint8_t *)copy)[size] = '\0';
    return copy;
}
static void fuzz_free_input(uint8_t *copy) { free(copy); }

// The system headers are in; from here on every call is a tracked one (the
// runtime's, and the harness's between FUZZ_BEGIN and FUZZ_END).
#define calloc fuzz_calloc
#define malloc fuzz_malloc
#define realloc fuzz_realloc
#define strdup fuzz_strdup
#define free fuzz_free
#define mmap fuzz_mmap
#define munmap fuzz_munmap
#define FUZZING
#define TESTING   // runq.c and export.c without their main
#include "../../export.c"

static jmp_buf fuzz_rejected __attribute__((unused));   // fuzz_http has no FUZZ_BEGIN: the server must not die

// die() inside the parsers comes back to FUZZ_BEGIN's setjmp, which skips to FUZZ_END.
#define FUZZ_BEGIN do {                                   \
        die_jump = &fuzz_rejected;                        \
        if (setjmp(fuzz_rejected) != 0) {                 \
            fuzz_release_all();                           \
            break;                                        \
        }
#define FUZZ_END                                          \
        fuzz_check_released();                            \
    } while (0);                                          \
    die_jump = NULL

// ---- inputs for parsers that open a path: files in a private directory on
// tmpfs (/dev/shm when there is one: a fuzzer writes them thousands of times a second)

static char fuzz_directory[64];
static char fuzz_paths[4][128];   // the files written there, one per name
static int fuzz_n_paths;

static void fuzz_remove_files(void) {
    for (int i = 0; i < fuzz_n_paths; i++) unlink(fuzz_paths[i]);
    rmdir(fuzz_directory);
}

static const char *fuzz_dir(void) {
    if (!fuzz_directory[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_directory, sizeof fuzz_directory, "%s/edge-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_directory)) { perror("fuzz: mkdtemp"); abort(); }
        atexit(fuzz_remove_files);
    }
    return fuzz_directory;
}

// Writes bytes to NAME in the private directory and returns its path.
static const char *fuzz_write_file(const char *name, const void *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    int slot = 0;
    while (slot < fuzz_n_paths && strcmp(fuzz_paths[slot], path) != 0) slot++;
    if (slot == fuzz_n_paths) {
        if (fuzz_n_paths == 4) abort();
        memcpy(fuzz_paths[fuzz_n_paths++], path, sizeof path);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) { perror(path); abort(); }
    return fuzz_paths[slot];
}

// An accepted model source planned as a float export, every planned tensor
// checked against its file, then read whole as export reads it (the seed
// corpora's models are tiny).
static void fuzz_read_all_tensors(Source *src) {
    Plan plan = make_plan(src, TYPE_F32, 0);
    check_source_tensors(src, &plan);
    for (int i = 0; i < plan.count; i++) {
        const PlannedTensor *t = &plan.tensors[i];
        if (t->kind == K_TOKENIZER) continue;
        float *rows = xcalloc((size_t)t->entry.rows * t->entry.cols, sizeof(float), "rows");
        read_finite_rows(src, t, 0, (int)t->entry.rows, rows);
        free(rows);
    }
    free(plan.tensors);
}

// An input holding n files: the lengths of the first n - 1 (2 bytes each,
// little-endian, cut to what there is), then the files in order, the last
// taking the rest. An empty file is left out, as if the directory had none.
// 0 if the input is too short to hold the lengths.
static int fuzz_write_files(const uint8_t *data, size_t size, const char *const *names, int n) {
    size_t at = 2 * (size_t)(n - 1);
    if (size < at) return 0;
    for (int i = 0; i < n; i++) {
        size_t length = i < n - 1 ? (size_t)(data[2 * i] | data[2 * i + 1] << 8) : size - at;
        if (length > size - at) length = size - at;
        const char *path = fuzz_write_file(names[i], data + at, length);
        if (length == 0) unlink(path);
        at += length;
    }
    return 1;
}

// A Hugging Face directory of the four named files from the input (as
// fuzz_write_files lays them out) through open_hf; an accepted model is
// planned, every tensor checked against the file and read whole.
static void fuzz_hf_directory(const uint8_t *data, size_t size, const char *const *files) {
    if (!fuzz_write_files(data, size, files, 4)) return;
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_hf(&src, fuzz_dir());
    fuzz_read_all_tensors(&src);
    free_source(&src);
    FUZZ_END;
}

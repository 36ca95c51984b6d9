// verify_cost.c — what one speculative pass costs (tools/bench-speculative
// builds and runs it): a pass of b tokens (the last token and b - 1 drafted
// ones, every row's logits, as runq --lookup/--draft verifies them) timed
// against one decode step at the same position, b = 1..9, the fastest of
// interleaved repeats; with draft checkpoints, each draft's decode step over
// the model's (the draft/target cost ratio r). From these, the speed-up
// speculative decoding would reach if each drafted token were accepted with
// probability a, independently: a pass of k drafted tokens emits
// (1 - a^(k+1)) / (1 - a) tokens on average and costs c(k+1) + k r decode
// steps, c(b) being the measured cost of a pass of b tokens; the table gives
// the best k for each a. A benchmark, never a test; weights' values do not
// change its figures (seeded random weights of a real shape will do).
//
//     build/verify_cost [-T threads] [-r repeats] [-p position] MODEL.q4.bin [DRAFT.q4.bin ...]
// (-T defaults to 1: CPU time, the measure, is a pass's work only with one
// thread; -r 20, -p 128.)
#define TESTING
#define PROGRAM_NAME "verify_cost"
#pragma GCC diagnostic ignored "-Wunused-function"   // runq's generate, chat, sampler: unused here
#include "../runq.c"

#define MAX_PASS 9    // the longest pass measured: 8 drafted tokens and the last one
#define MAX_DRAFTS 4

static double cpu_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1000.0 + (double)now.tv_nsec / 1e6;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// A checkpoint with its first `position` positions filled by seeded random
// tokens, ready to decode at `position`. shared: another model's thread pool
// to run on (as runq --draft shares one), NULL for its own.
static void open_at(Transformer *t, const char *path, int position, int n_threads, const int *tokens, ThreadPool *shared) {
    open_checkpoint(t, path);
    if (position + MAX_PASS > t->config.seq_len)
        die("%s: position %d and a pass of %d tokens do not fit its context of %d", path, position, MAX_PASS,
            t->config.seq_len);
    prepare_run(t, position + MAX_PASS, n_threads);
    if (shared) {
        pool_free(t->pool);
        t->pool = shared;
    }
    forward_tokens(t, tokens, position, 0);
}

int main(int argc, char **argv) {
    int n_threads = 0, repeats = 20, position = 128, n_drafts = 0;
    const char *model = NULL, *drafts[MAX_DRAFTS];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-T") == 0 && i + 1 < argc) n_threads = (int)parse_long("-T", argv[++i], 1, 1024);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) repeats = (int)parse_long("-r", argv[++i], 1, 100000);
        else if (strcmp(argv[i], "-p") == 0 && i + 1 < argc) position = (int)parse_long("-p", argv[++i], 1, 1 << 20);
        else if (argv[i][0] == '-') die("usage: verify_cost [-T threads] [-r repeats] [-p position] MODEL [DRAFT ...]");
        else if (!model) model = argv[i];
        else if (n_drafts < MAX_DRAFTS) drafts[n_drafts++] = argv[i];
        else die("at most %d drafts", MAX_DRAFTS);
    }
    if (!model) die("usage: verify_cost [-T threads] [-r repeats] [-p position] MODEL [DRAFT ...]");
    if (n_threads == 0) n_threads = 1;

    Transformer t;
    open_checkpoint(&t, model);
    int vocab = t.config.vocab_size;
    free_transformer(&t);
    int *tokens = xcalloc((size_t)position + MAX_PASS, sizeof(int), "tokens");
    unsigned long long rng = 42;
    for (int i = 0; i < position + MAX_PASS; i++) tokens[i] = (int)(random_u32(&rng) % (unsigned)vocab);
    open_at(&t, model, position, n_threads, tokens, NULL);
    Transformer draft[MAX_DRAFTS];
    for (int d = 0; d < n_drafts; d++) open_at(&draft[d], drafts[d], position, n_threads, tokens, t.pool);
    float *rows = xcalloc((size_t)MAX_PASS * vocab, sizeof(float), "logits");

    // The fastest of the repeats, for a decode step, each pass length and
    // each draft's decode step, taken in turn in every repeat: on a shared
    // machine other jobs only ever slow a measurement down (their turns on
    // the cores, their share of the memory bus), so the fastest is the
    // nearest to the work's own cost; the medians of the ratios to a decode
    // step timed just before show how far the noise goes. Times are this
    // process's CPU time, which others' turns on the cores do not inflate
    // (with -T 1, exactly the pass's work; with more threads, their spinning too).
    int slots = 1 + MAX_PASS + n_drafts;
    double *fastest = xcalloc((size_t)slots, sizeof(double), "times");
    double *ratios = xcalloc((size_t)slots * repeats, sizeof(double), "times");
    for (int m = 0; m < slots; m++) fastest[m] = INFINITY;
    // The passes' repeats first, then the drafts': a draft's step timed right
    // after a long pass ran slower on this project's shared machine (17 ms
    // alone, 22-50 ms after a pass of 9 tokens, TinyLlama's layers halved).
    for (int r = 0; r < 2 * (repeats + 1); r++) {   // repeat 0 of each warms the caches up and is not counted
        int drafts_now = r > repeats;
        for (int m = drafts_now ? 1 + MAX_PASS : 1; m < (drafts_now ? slots : 1 + MAX_PASS); m++) {
            double start = cpu_ms();
            forward(&t, tokens[position], position);
            double middle = cpu_ms();
            if (m <= MAX_PASS) forward_batch_all_logits(&t, tokens + position, m, position, rows);
            else forward(&draft[m - 1 - MAX_PASS], tokens[position], position);
            double end = cpu_ms();
            int repeat = drafts_now ? r - repeats - 2 : r - 1;
            if (repeat < 0) continue;
            ratios[(size_t)m * repeats + repeat] = (end - middle) / (middle - start);
            if (middle - start < fastest[0]) fastest[0] = middle - start;
            if (end - middle < fastest[m]) fastest[m] = end - middle;
        }
    }
    double step = fastest[0], cost[MAX_PASS + 1], spread[MAX_PASS + 1], ratio[MAX_DRAFTS];
    for (int b = 1; b <= MAX_PASS; b++) {
        cost[b] = fastest[b] / step;
        spread[b] = median(ratios + (size_t)b * repeats, repeats);
    }
    for (int d = 0; d < n_drafts; d++) ratio[d] = fastest[1 + MAX_PASS + d] / step;

    printf("%s, %d thread%s, position %d, %d repeats: one decode step %.3f ms of CPU time, the fastest (%s kernels)\n\n", model, n_threads,
           n_threads == 1 ? "" : "s", position, repeats, step, t.kernels.name);
    printf("| tokens in the pass (1 + drafted) |");
    for (int b = 1; b <= MAX_PASS; b++) printf(" %d |", b);
    printf("\n| --- |");
    for (int b = 1; b <= MAX_PASS; b++) printf(" ---: |");
    printf("\n| cost, decode steps (fastest of the repeats) |");
    for (int b = 1; b <= MAX_PASS; b++) printf(" %.2f |", cost[b]);
    printf("\n| (median of the ratios to the step before) |");
    for (int b = 1; b <= MAX_PASS; b++) printf(" %.2f |", spread[b]);
    printf("\n\n");

    // The predicted speed-up at each acceptance rate, for a lookup draft
    // (costs nothing) and each draft checkpoint (r decode steps a token).
    printf("| acceptance a | lookup (r = 0): speed-up (best k) |");
    for (int d = 0; d < n_drafts; d++) printf(" %s (r = %.2f) |", drafts[d], ratio[d]);
    printf("\n| ---: | ---: |");
    for (int d = 0; d < n_drafts; d++) printf(" ---: |");
    printf("\n");
    static const double rates[] = { 0.3, 0.5, 0.6, 0.7, 0.8, 0.9 };
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        double a = rates[i];
        printf("| %.1f |", a);
        for (int d = -1; d < n_drafts; d++) {
            double r = d < 0 ? 0.0 : ratio[d], best = 0.0;
            int best_k = 0;
            for (int k = 1; k + 1 <= MAX_PASS; k++) {
                double speedup = (1.0 - pow(a, k + 1)) / (1.0 - a) / (cost[k + 1] + k * r);
                if (speedup > best) best = speedup, best_k = k;
            }
            printf(" %.2fx (k %d) |", best, best_k);
        }
        printf("\n");
    }
    free(ratios);
    free(fastest);
    free(rows);
    free(tokens);
    for (int d = 0; d < n_drafts; d++) {
        draft[d].pool = NULL;   // the model's, freed with it
        free_transformer(&draft[d]);
    }
    free_transformer(&t);
    return 0;
}

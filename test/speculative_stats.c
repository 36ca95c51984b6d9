// speculative_stats.c — a test helper (test/test_speculative.sh runs it):
// speculative sampling keeps the model's distribution. For each sampler
// setting and draft (a draft model, a lookup draft), many passes from the
// same state, each with fresh random numbers: the first two tokens emitted
// are counted as a pair, and the counts are held to the exact distribution of
// pairs plain decoding draws from (the processed p of the first token, then
// of the second given the first, from runq's forward one token at a time) by
// a chi-square statistic under its critical value at alpha = 1e-4. Two
// deliberately wrong rules must land far above it: so the test can fail.
// Plain sample() is held to the same exact distribution first, as a control
// of the expected counts themselves.
//
//     build/speculative_stats TARGET.q4.bin DRAFT.q4.bin [trials]
//
// It is not a speed test, and it checks no text: test_speculative.sh checks
// that greedy speculative text is plain decoding's, byte for byte.
#define TESTING
#define PROGRAM_NAME "speculative_stats"
#pragma GCC diagnostic ignored "-Wunused-function"   // runq's chat, generate: unused here
#include "../runq.c"
#include "check.h"

typedef struct {
    const char *name;
    int use_draft, lookup, plain;   // the draft: a model, a lookup, or none (plain sample())
    float temperature, topp;
    int wrong_rule;                 // 0, WRONG_RESIDUAL or WRONG_UNPROCESSED
    const char *prompt;
} Setting;

// The exact probability of every pair (first, second) of tokens plain
// decoding draws after history[0..pos] (history[pos] the token decoded next),
// into pairs (vocab_size * vocab_size).
static void exact_pairs(Transformer *t, Sampler *s, const int *history, int pos, double *pairs) {
    int n = t->config.vocab_size;
    float *first = xcalloc((size_t)n, sizeof(float), "p"), *second = xcalloc((size_t)n, sizeof(float), "p");
    sampler_probabilities(s, forward(t, history[pos], pos), first);
    memset(pairs, 0, (size_t)n * n * sizeof(double));
    for (int a = 0; a < n; a++) {
        if (first[a] <= 0.0f) continue;
        sampler_probabilities(s, forward(t, a, pos + 1), second);
        for (int b = 0; b < n; b++) pairs[(size_t)a * n + b] = (double)first[a] * second[b];
    }
    free(first);
    free(second);
}

// The chi-square statistic of counts against trials * expected, the pairs
// expected fewer than 5 times pooled into one bin; *df gets its degrees of
// freedom. A pair seen that cannot happen makes it infinite.
static double chi_square(const long *counts, const double *expected, size_t n_bins, long trials, int *df) {
    double statistic = 0.0, pooled_expected = 0.0;
    long pooled_count = 0;
    int bins = 0;
    for (size_t i = 0; i < n_bins; i++) {
        double e = expected[i] * (double)trials;
        if (e >= 5.0) {
            statistic += (counts[i] - e) * (counts[i] - e) / e;
            bins++;
        } else {
            pooled_expected += e;
            pooled_count += counts[i];
        }
    }
    if (pooled_expected > 0.0) {
        statistic += (pooled_count - pooled_expected) * (pooled_count - pooled_expected) / pooled_expected;
        bins++;
    } else if (pooled_count > 0) {
        statistic = INFINITY;
    }
    *df = bins - 1;
    return statistic;
}

// chi-square's critical value for df degrees of freedom at alpha = 1e-4
// (Wilson and Hilferty's cube approximation; z is the normal's 1 - 1e-4 quantile)
static double critical_value(int df) {
    double z = 3.719, k = df > 0 ? df : 1;
    double c = 1.0 - 2.0 / (9.0 * k) + z * sqrt(2.0 / (9.0 * k));
    return k * c * c * c;
}

// One setting: its statistic over its critical value (below 1: the counts
// fit the exact distribution).
static double run_setting(const Setting *set, Transformer *t, Transformer *draft, Tokenizer *tok, long trials) {
    int n = t->config.vocab_size, steps = t->state.cache_len;
    int *history = xcalloc(encode_capacity(tok, set->prompt) + (size_t)steps + 1, sizeof(int), "tokens");
    int n_prompt = encode(tok, set->prompt, 1, 0, history);
    int pos = n_prompt - 1, first_token = history[pos];   // the prompt's last token: decoded by every pass
    forward_tokens(t, history, pos, 0);
    if (set->use_draft) forward_tokens(draft, history, pos, 0);

    Sampler sampler;
    build_sampler(&sampler, n, set->temperature, set->topp, 0x5eed + (unsigned long long)set->wrong_rule);
    double *expected = xcalloc((size_t)n * n, sizeof(double), "pairs");
    exact_pairs(t, &sampler, history, pos, expected);
    long *counts = xcalloc((size_t)n * n, sizeof(long), "counts");

    Speculation sp;
    build_speculation(&sp, t, set->use_draft ? draft : NULL, set->lookup, 4);
    sp.wrong_rule = set->wrong_rule;
    float *logits = xcalloc((size_t)n, sizeof(float), "logits");
    for (long trial = 0; trial < trials; trial++) {
        history[pos] = first_token;
        int a, b;
        if (set->plain) {
            memcpy(logits, forward(t, history[pos], pos), (size_t)n * sizeof(float));
            a = sample(&sampler, logits);
            b = sample(&sampler, forward(t, a, pos + 1));
        } else {
            // every pass from the same state: the draft's cache holds the prompt
            // but its last token (the rest is written again), the longest
            // draft, no pause (the rule is under test, not the policy)
            sp.draft_positions = pos;
            sp.draft_length = sp.max_draft;
            sp.pause = sp.pause_length = 0;
            int emitted = speculative_pass(t, &sp, &sampler, history, pos, steps);
            if (emitted < 2) speculative_pass(t, &sp, &sampler, history, pos + 1, steps);
            a = history[pos + 1], b = history[pos + 2];
        }
        counts[(size_t)a * n + b]++;
    }
    int df;
    double statistic = chi_square(counts, expected, (size_t)n * n, trials, &df), critical = critical_value(df);
    printf("%-44s chi2 %9.1f, df %3d, critical %6.1f, %4.2f tokens/pass, %3.0f %% accepted\n", set->name, statistic, df,
           critical, sp.passes ? (double)sp.emitted / sp.passes : 0.0, sp.drafted ? 100.0 * sp.accepted / sp.drafted : 0.0);
    if (!set->plain && sp.drafted == 0) {
        fprintf(stderr, "%s: nothing was drafted, so nothing was tested\n", set->name);
        statistic = INFINITY;
    }
    if (!set->plain && sp.accepted == sp.drafted) {
        fprintf(stderr, "%s: every drafted token was accepted: the rejection path went untested\n", set->name);
        statistic = INFINITY;
    }
    free_speculation(&sp);
    free(logits);
    free(counts);
    free(expected);
    free_sampler(&sampler);
    free(history);
    return statistic / critical;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: speculative_stats TARGET.q4.bin DRAFT.q4.bin [trials]\n");
        return 2;
    }
    long trials = argc == 4 ? parse_long("trials", argv[3], 100, 100000000) : 4000;
    Transformer t, draft;
    build_transformer(&t, argv[1], 64, 1);
    build_transformer(&draft, argv[2], 64, 1);
    check_draft_vocabulary(&t, &draft);
    Tokenizer tok;
    build_tokenizer(&tok, &t, NULL);

    // A draft model drafts after a story's start; lookup drafts need text
    // that repeats, here one whose next word the model is unsure of, so that
    // drafted tokens are both accepted and rejected.
    const char *story = "Once upon a time, there was a little";
    const char *repeating = "Once upon a time, there was a little boy. Once upon a time, there was a little";
    const Setting right[] = {
        { "plain sample(), t 1 p 0.9 (the control)",    0, 0, 1, 1.0f, 0.9f, 0, story },
        { "draft model, t 1 p 0.9",                     1, 0, 0, 1.0f, 0.9f, 0, story },
        { "draft model, t 0.8, no top-p",               1, 0, 0, 0.8f, 1.0f, 0, story },
        { "lookup, t 1 p 0.9",                          0, 1, 0, 1.0f, 0.9f, 0, repeating },
        { "lookup, t 1.5, no top-p",                    0, 1, 0, 1.5f, 0.0f, 0, repeating },
    };
    const Setting wrong[] = {
        { "WRONG draft model: rejection draws from p",  1, 0, 0, 1.0f, 0.9f, WRONG_RESIDUAL, story },
        { "WRONG lookup: rejection draws from p",       0, 1, 0, 1.0f, 0.9f, WRONG_RESIDUAL, repeating },
        { "WRONG draft model: ratio before top-p",      1, 0, 0, 1.0f, 0.8f, WRONG_UNPROCESSED, story },
    };
    for (size_t i = 0; i < sizeof right / sizeof right[0]; i++) {
        double ratio = run_setting(&right[i], &t, &draft, &tok, trials);
        CHECK(ratio < 1.0, "%s: the counts do not fit the model's distribution (chi2 %.2f x its critical value)",
              right[i].name, ratio);
    }
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        double ratio = run_setting(&wrong[i], &t, &draft, &tok, trials);
        CHECK(ratio > 2.0, "%s: the test did not catch a wrong rule (chi2 only %.2f x its critical value)",
              wrong[i].name, ratio);
    }
    free_tokenizer(&tok);
    free_transformer(&draft);
    free_transformer(&t);
    return check_summary("speculative_stats");
}

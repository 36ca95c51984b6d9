/*
sampling.h — the server's sampler: llama.cpp's chain over one step's logits,
with the model's own probabilities kept for log-probabilities.

    logits -> logit_bias -> penalties (repeat, presence, frequency over the
    last repeat_last_n tokens) -> the samplers in the request's order
    (top_k, top_p, min_p, temperature; llama.cpp's default order) -> a draw
    (runq's xorshift generator), or argmax at temperature 0; with a grammar,
    a pick it refuses is drawn again from the tokens it allows

What it is: llama.cpp's meaning of each sampler (top_p and min_p over the
probabilities at that point of the chain, temperature last); the reported
log-probabilities are those of the model's own distribution (softmax of its
logits, before any sampler), as llama.cpp's server and OpenAI report them.
What it is not: runq's sampler (temperature, then top-p), which runq and
run share line for line; nor DRY, XTC, mirostat or typical sampling.

Include after: runq.c (Sampler's ProbIndex, random_f32, softmax) and grammar.h.
*/

#ifndef EDGE_SAMPLING_H
#define EDGE_SAMPLING_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

enum SamplerStep { STEP_TOP_K = 'k', STEP_TOP_P = 'p', STEP_MIN_P = 'm', STEP_TEMPERATURE = 't' };
#define MAX_SAMPLER_STEPS 8

typedef struct {
    int token;
    float bias;                   // added to the logit; -inf bans the token
} LogitBias;

typedef struct {
    float temperature;            // 0: greedy
    int top_k;                    // <= 0: off
    float top_p;                  // >= 1: off
    float min_p;                  // <= 0: off
    float repeat_penalty;         // 1: off
    float presence_penalty, frequency_penalty;   // 0: off
    int repeat_last_n;            // tokens the penalties look back over; -1: the whole context
    LogitBias *biases;
    int n_biases;
    char steps[MAX_SAMPLER_STEPS];   // SamplerStep order
    int n_steps;
    int n_probs;                  // top alternatives to report per token (0: none)
    int want_logprobs;            // report the chosen token's log-probability
} SamplingParams;

// One alternative a step offered: the model's log-probability of it.
typedef struct {
    int token;
    float logprob;
} TokenLogprob;

// What a step reports when asked: the chosen token and the top alternatives.
typedef struct {
    TokenLogprob chosen;
    TokenLogprob *top;            // (n_probs,)
    int n_top;
} StepLogprobs;

// A sequence's sampler: its generator and its scratch (one per choice: a
// slot engine runs one per sequence).
typedef struct {
    const SamplingParams *params;
    unsigned long long rng_state;
    int vocab_size;
    ProbIndex *candidates;        // (vocab_size,) the tokens still in play
    ProbIndex *trial;             // (vocab_size,) a copy for the unmasked first pick
    float *probabilities;         // (vocab_size,) scratch of the chain's steps
    float *model_probabilities;   // (vocab_size,) the model's own distribution, for log-probabilities
    int *counts;                  // (vocab_size,) occurrences in the penalty window
} ChainSampler;

static void build_chain_sampler(ChainSampler *s, const SamplingParams *params, int vocab_size, unsigned long long seed) {
    s->params = params;
    s->rng_state = seed;
    s->vocab_size = vocab_size;
    s->candidates = xcalloc((size_t)vocab_size, sizeof(ProbIndex), "sampler");
    s->trial = xcalloc((size_t)vocab_size, sizeof(ProbIndex), "sampler");
    s->probabilities = xcalloc((size_t)vocab_size, sizeof(float), "sampler");
    s->model_probabilities = xcalloc((size_t)vocab_size, sizeof(float), "sampler");
    s->counts = xcalloc((size_t)vocab_size, sizeof(int), "sampler");
}

static void free_chain_sampler(ChainSampler *s) {
    free(s->candidates);
    free(s->trial);
    free(s->probabilities);
    free(s->model_probabilities);
    free(s->counts);
}

// The model's distribution at this step, kept before any sampler changes the logits.
static void keep_model_distribution(ChainSampler *s, const float *logits) {
    memcpy(s->model_probabilities, logits, (size_t)s->vocab_size * sizeof(float));
    softmax(s->model_probabilities, s->vocab_size);
}

// The chosen token's log-probability under that distribution, and the top
// n_top tokens of it (ties: the lower id first).
static void step_logprobs(const ChainSampler *s, int chosen, int n_top, StepLogprobs *out) {
    const float *p = s->model_probabilities;
    int n = s->vocab_size;
    out->chosen = (TokenLogprob){ chosen, logf(p[chosen]) };
    out->n_top = n_top < n ? n_top : n;
    out->top = out->n_top ? xcalloc((size_t)out->n_top, sizeof(TokenLogprob), "logprobs") : NULL;
    for (int k = 0; k < out->n_top; k++) {   // n_top is small (at most 20): a selection, not a sort
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < k && !taken; j++) taken = out->top[j].token == i;
            if (!taken && (best < 0 || p[i] > p[best])) best = i;
        }
        out->top[k] = (TokenLogprob){ best, logf(p[best]) };
    }
}

// llama.cpp's penalties: a logit in the window divided (positive) or
// multiplied (negative) by repeat_penalty, then count * frequency +
// (count > 0) * presence subtracted.
static void apply_penalties(ChainSampler *s, float *logits, const int *history, int n_history) {
    const SamplingParams *p = s->params;
    if (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) return;
    int window = p->repeat_last_n < 0 || p->repeat_last_n > n_history ? n_history : p->repeat_last_n;
    for (int i = n_history - window; i < n_history; i++) s->counts[history[i]]++;
    for (int i = n_history - window; i < n_history; i++) {
        int token = history[i], count = s->counts[token];
        if (count == 0) continue;   // already penalised (counts are cleared below, once per token)
        float *logit = &logits[token];
        *logit = *logit <= 0 ? *logit * p->repeat_penalty : *logit / p->repeat_penalty;
        *logit -= (float)count * p->frequency_penalty + p->presence_penalty;
        s->counts[token] = 0;
    }
}

static int compare_candidates(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->index - y->index;
}

// The k best of n candidates moved to the front (unordered), by a min-heap of
// k: top_k first in the chain then costs n log k, not a sort of the vocabulary.
static int keep_best(ProbIndex *c, int n, int k) {
    #define WORSE(a, b) (compare_candidates(&(a), &(b)) > 0)
    for (int i = 0; i < n; i++) {
        ProbIndex item = c[i];
        int size = i < k ? i : k;
        if (i >= k) { if (!WORSE(c[0], item)) continue; }   // no better than the worst kept
        int at = i < k ? size : 0;
        if (i < k) {   // sift up
            while (at > 0 && WORSE(item, c[(at - 1) / 2])) { c[at] = c[(at - 1) / 2]; at = (at - 1) / 2; }
        } else {       // replace the root, sift down
            for (;;) {
                int child = 2 * at + 1;
                if (child >= k) break;
                if (child + 1 < k && WORSE(c[child + 1], c[child])) child++;
                if (!WORSE(c[child], item)) break;
                c[at] = c[child];
                at = child;
            }
        }
        c[at] = item;
    }
    #undef WORSE
    return k;
}

// Probabilities of the candidates' logits (held in prob) at temperature 1.
static void candidates_softmax(ProbIndex *c, int n, float *out) {
    float max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) if (c[i].prob > max) max = c[i].prob;
    for (int i = 0; i < n; i++) { out[i] = expf(c[i].prob - max); sum += out[i]; }
    for (int i = 0; i < n; i++) out[i] /= sum;
}

// The chain after the mask: candidates hold logits, sorted best first when a step truncates.
static int sample_candidates(ChainSampler *s, ProbIndex *c, int n) {
    const SamplingParams *p = s->params;
    float *probs = s->probabilities;   // scratch here: the reported distribution is computed before
    float temperature = 1.0f;
    for (int k = 0; k < p->n_steps; k++) {
        switch (p->steps[k]) {
        case STEP_TOP_K:
            if (p->top_k > 0 && p->top_k < n) n = p->top_k;
            break;
        case STEP_TOP_P: {   // the smallest head whose mass reaches top_p (at least one token)
            if (p->top_p >= 1.0f) break;
            candidates_softmax(c, n, probs);
            float cumulative = 0;
            for (int i = 0; i < n; i++) {
                cumulative += probs[i];
                if (cumulative >= p->top_p) { n = i + 1; break; }
            }
            break;
        }
        case STEP_MIN_P: {   // tokens at least min_p times as likely as the best
            if (p->min_p <= 0.0f) break;
            float threshold = c[0].prob + logf(p->min_p);
            int kept = 1;
            while (kept < n && c[kept].prob >= threshold) kept++;
            n = kept;
            break;
        }
        case STEP_TEMPERATURE:
            temperature = p->temperature;
            break;
        }
    }
    for (int i = 0; i < n; i++) c[i].prob /= temperature;
    candidates_softmax(c, n, probs);
    float coin = random_f32(&s->rng_state), cdf = 0;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf) return c[i].index;
    }
    return c[n - 1].index;
}

// The samplers over candidates[0..n) (which they reorder and rescale).
static int sample_from(ChainSampler *s, ProbIndex *candidates, int n) {
    const SamplingParams *p = s->params;
    if (p->temperature <= 0.0f) {   // greedy: the best (the lower id among equals)
        int best = 0;
        for (int i = 1; i < n; i++) if (candidates[i].prob > candidates[best].prob) best = i;
        return candidates[best].index;
    }
    int truncates = 0;
    for (int k = 0; k < p->n_steps; k++)
        truncates |= (p->steps[k] == STEP_TOP_K && p->top_k > 0) || (p->steps[k] == STEP_TOP_P && p->top_p < 1.0f)
                   || (p->steps[k] == STEP_MIN_P && p->min_p > 0.0f);
    if (truncates && p->steps[0] == STEP_TOP_K && p->top_k > 0 && p->top_k < n) n = keep_best(candidates, n, p->top_k);
    if (truncates) qsort(candidates, (size_t)n, sizeof(ProbIndex), compare_candidates);
    return sample_candidates(s, candidates, n);   // without truncation, in id order: no sort needed
}

// One step: logits (modified) -> the next token; -1 when the mask leaves
// nothing (the caller ends the sequence). allowed(context, token) is the
// grammar's mask, NULL for none; history: the sequence so far (penalties).
// With a mask, the token the samplers pick without it is tried first, and
// the mask is computed over every token only when that one is refused
// (llama.cpp's way): a refused first pick then draws again from the masked
// tokens, which, for plain sampling, is exactly the masked distribution.
typedef int (*TokenFilter)(void *context, int token);

static int chain_sample(ChainSampler *s, float *logits, const int *history, int n_history, TokenFilter allowed, void *context) {
    const SamplingParams *p = s->params;
    for (int i = 0; i < p->n_biases; i++) logits[p->biases[i].token] += p->biases[i].bias;
    apply_penalties(s, logits, history, n_history);
    int n = 0;
    for (int i = 0; i < s->vocab_size; i++) {
        if (logits[i] == -INFINITY || isnan(logits[i])) continue;
        s->candidates[n++] = (ProbIndex){ logits[i], i };
    }
    if (n == 0) return -1;
    if (!allowed) return sample_from(s, s->candidates, n);
    memcpy(s->trial, s->candidates, (size_t)n * sizeof(ProbIndex));
    int first = sample_from(s, s->trial, n);
    if (allowed(context, first)) return first;
    int kept = 0;
    for (int i = 0; i < n; i++) if (allowed(context, s->candidates[i].index)) s->candidates[kept++] = s->candidates[i];
    return kept ? sample_from(s, s->candidates, kept) : -1;
}

// "samplers": llama.cpp's names (an array) or its letters (a string); the
// steps this sampler has, in the order given. 0 and the unknown name if not.
static int parse_sampler_steps(SamplingParams *p, const char *const *names, int n, char *unknown, size_t unknown_size) {
    p->n_steps = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i];
        char step = strcmp(name, "top_k") == 0 || strcmp(name, "k") == 0 ? STEP_TOP_K
                  : strcmp(name, "top_p") == 0 || strcmp(name, "p") == 0 ? STEP_TOP_P
                  : strcmp(name, "min_p") == 0 || strcmp(name, "m") == 0 ? STEP_MIN_P
                  : strcmp(name, "temperature") == 0 || strcmp(name, "t") == 0 ? STEP_TEMPERATURE : 0;
        if (!step) { snprintf(unknown, unknown_size, "%s", name); return 0; }
        if (p->n_steps < MAX_SAMPLER_STEPS) p->steps[p->n_steps++] = step;
    }
    return 1;
}

#pragma GCC diagnostic pop
#endif

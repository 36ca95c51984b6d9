/*
convert/gptq.h — one matrix rounded and pruned against the inputs a
calibration text gives it: GPTQ (Frantar et al. 2022), SparseGPT (Frantar &
Alistarh 2023) and Wanda (Sun et al. 2023), from the Hessian H = X^T X / n of
the matrix's n inputs X (their outer products summed); and the spill file that
keeps each result until the checkpoint is written, so a 7B export holds one
matrix's Hessian and one layer's weights at a time.

    GPTQ       columns rounded left to right; each column's rounding error is
               spread over the columns not rounded yet through the upper
               Cholesky factor U of H^-1 (U^T U = H^-1): w_j -= (w_i - q_i) /
               U_ii * U_ij. H's diagonal is damped by 1 % of its mean (the
               paper's), and the updates to the columns past a block of 128
               wait until the block is done (lazy batch updates). A group's
               scale is searched (convert/quantize.h) on its weights as they
               are when its first column comes, each weighted by H_cc.
    SparseGPT  the same loop with q_i = 0 for a pruned weight; which ones are
               chosen as the loop goes, by the least w^2 / U_ii^2: per block
               of columns for a share of all the block's weights, per four
               columns for 2:4. Without --gptq the kept weights stay fp32 (and
               are rounded on their own afterwards).
    Wanda      each output row's weights of least |w| * ||x_c|| pruned, no
               update: the row's share, or two of every four for 2:4.

What it is not: the walk that gives the inputs (convert/calibrate.h), nor a
row's rounding on its own (convert/quantize.h). Every step computes in an
order fixed by the code, so a file is the same for any thread count and CPU.

Include after: runq.c, convert/quantize.h.
*/

#ifndef EDGE_CONVERT_GPTQ_H
#define EDGE_CONVERT_GPTQ_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// The loops below that the compiler vectorizes are built twice on x86-64,
// plain and for AVX2, and the CPU picks one (GCC's target_clones). Each
// element's arithmetic is the same in both (no FMA, sums in the code's
// order), so the files are the same too.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

// Items [0, count) shared among the threads, a contiguous slice each.
static void thread_slice(int count, int thread, int n_threads, int *first, int *last) {
    int per_thread = (count + n_threads - 1) / n_threads;
    *first = thread * per_thread < count ? thread * per_thread : count;
    *last = *first + per_thread < count ? *first + per_thread : count;
}

// ----------------------------------------------------------------------------
// The Hessian: H = X^T X / n in double, from float dot products in eight
// lanes (each entry the same whichever thread computes it).

#define HESSIAN_LANES 8

typedef struct {
    const float *xt;         // (cols rounded up to 4, n rounded up to 8) the inputs transposed, zero-padded
    int n_padded, cols, n;
    double *h;               // (cols, cols)
} HessianTask;

// Entries (i0..i0+1, j0..j0+3) of X^T X: two rows of xt against four.
VECTOR_CLONES static void hessian_tile(const float *xt, int n_padded, int i0, int j0, float out[2][4]) {
    float acc[2][4][HESSIAN_LANES] = { { { 0 } } };
    const float *a = xt + (size_t)i0 * n_padded, *b = xt + (size_t)j0 * n_padded;
    for (int k = 0; k < n_padded; k += HESSIAN_LANES)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < HESSIAN_LANES; l++) {
                float bj = b[(size_t)j * n_padded + k + l];
                acc[0][j][l] += a[k + l] * bj;
                acc[1][j][l] += a[(size_t)n_padded + k + l] * bj;
            }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 4; j++) out[i][j] = reduce8(acc[i][j]);
}

// Row pairs dealt round-robin (a pair's work grows with its index), each
// pair's tiles up to the diagonal; the upper triangle mirrored after.
static void hessian_task(void *arg, int thread, int n_threads) {
    HessianTask *task = arg;
    for (int i0 = 2 * thread; i0 < task->cols; i0 += 2 * n_threads)
        for (int j0 = 0; j0 <= i0 + 1 && j0 < task->cols; j0 += 4) {
            float tile[2][4];
            hessian_tile(task->xt, task->n_padded, i0, j0, tile);
            for (int i = i0; i < i0 + 2 && i < task->cols; i++)
                for (int j = j0; j < j0 + 4 && j <= i; j++) task->h[(size_t)i * task->cols + j] = tile[i - i0][j - j0] / task->n;
        }
}

// H (cols, cols) of the inputs x (n, cols); the caller frees it.
static double *input_hessian(ThreadPool *pool, const float *x, int n, int cols) {
    int n_padded = (int)round_up((size_t)n, HESSIAN_LANES), cols_padded = (int)round_up((size_t)cols + 1, 4);
    float *xt = xcalloc((size_t)cols_padded * n_padded, sizeof(float), "the Hessian's inputs");
    for (int t = 0; t < n; t++)
        for (int c = 0; c < cols; c++) xt[(size_t)c * n_padded + t] = x[(size_t)t * cols + c];
    double *h = xcalloc((size_t)cols * cols, sizeof(double), "a Hessian");
    HessianTask task = { xt, n_padded, cols, n, h };
    pool_run(pool, hessian_task, &task);
    for (int i = 0; i < cols; i++)
        for (int j = i + 1; j < cols; j++) h[(size_t)i * cols + j] = h[(size_t)j * cols + i];
    free(xt);
    return h;
}

// ----------------------------------------------------------------------------
// GPTQ's "Cholesky form" of the inverse Hessian: the upper triangular U with
// U^T U = H^-1, whose row i is what column i's error is spread by. With J the
// reversal (J H J is H read backwards), J H J = M M^T (Cholesky, M lower)
// gives H = (J M J)(J M J)^T with J M J upper, so U = (J M J)^-1 = J M^-1 J:
// one Cholesky and one triangular inverse, in double.

#define CHOLESKY_BLOCK 64

typedef struct {
    double *a;               // (n, n) row-major: the factor grows in the lower triangle
    int n, k0, k1;           // the block of columns being factored
    const double *panel;     // (k1 - k0, n): column k0 + p of rows k1.. as row p (the trailing update's operand)
} CholeskyTask;

// Rows i >= k1 of the block's columns, solved against the factored diagonal block.
static void cholesky_panel_task(void *arg, int thread, int n_threads) {
    CholeskyTask *t = arg;
    int first, last;
    thread_slice(t->n - t->k1, thread, n_threads, &first, &last);
    for (int i = t->k1 + first; i < t->k1 + last; i++) {
        double *row = t->a + (size_t)i * t->n;
        for (int k = t->k0; k < t->k1; k++) {
            double sum = row[k];
            for (int p = t->k0; p < k; p++) sum -= row[p] * t->a[(size_t)k * t->n + p];
            row[k] = sum / t->a[(size_t)k * t->n + k];
        }
    }
}

// Rows i0..i0+count-1 of the trailing matrix minus the block's outer products,
// a[i][j] -= sum_p a[i][k0+p] panel[p][j] for k1 <= j <= i, p in order.
VECTOR_CLONES static void cholesky_update_rows(double *a, int n, int k0, int k1, const double *panel, int i0, int count) {
    for (int p = 0; p < k1 - k0; p++) {
        const double *column = panel + (size_t)p * n;
        for (int r = 0; r < count; r++) {
            double *row = a + (size_t)(i0 + r) * n, factor = row[k0 + p];
            for (int j = k1; j <= i0 + r; j++) row[j] -= factor * column[j];
        }
    }
}

static void cholesky_update_task(void *arg, int thread, int n_threads) {
    CholeskyTask *t = arg;
    for (int i0 = t->k1 + 4 * thread; i0 < t->n; i0 += 4 * n_threads)   // tiles of four rows, round-robin
        cholesky_update_rows(t->a, t->n, t->k0, t->k1, t->panel, i0, t->n - i0 < 4 ? t->n - i0 : 4);
}

// a (n, n) symmetric -> its Cholesky factor in the lower triangle (blocked,
// right-looking). Returns 0 when a pivot is not positive (a not positive definite).
static int cholesky_lower(ThreadPool *pool, double *a, int n) {
    double *panel = xcalloc((size_t)CHOLESKY_BLOCK * n, sizeof(double), "a Cholesky panel");
    int ok = 1;
    for (int k0 = 0; k0 < n && ok; k0 += CHOLESKY_BLOCK) {
        int k1 = k0 + CHOLESKY_BLOCK < n ? k0 + CHOLESKY_BLOCK : n;
        for (int k = k0; k < k1 && ok; k++) {   // the diagonal block, as the textbook does it
            double *row = a + (size_t)k * n, pivot = row[k];
            for (int p = k0; p < k; p++) pivot -= row[p] * row[p];
            if (!(pivot > 0)) { ok = 0; break; }
            row[k] = sqrt(pivot);
            for (int i = k + 1; i < k1; i++) {
                double *other = a + (size_t)i * n, sum = other[k];
                for (int p = k0; p < k; p++) sum -= other[p] * row[p];
                other[k] = sum / row[k];
            }
        }
        if (!ok || k1 == n) break;
        CholeskyTask task = { a, n, k0, k1, panel };
        pool_run(pool, cholesky_panel_task, &task);
        for (int p = 0; p < k1 - k0; p++)
            for (int j = k1; j < n; j++) panel[(size_t)p * n + j] = a[(size_t)j * n + k0 + p];
        pool_run(pool, cholesky_update_task, &task);
    }
    free(panel);
    return ok;
}

#define INVERSE_TILE 16      // rows of Y that share each row of M read (it comes from memory, they from cache)

typedef struct {
    double *a;               // (n, n): M in the lower triangle; Y = (M^-1)^T grows in the strict upper one
    double *y_diagonal;      // (n,) Y's diagonal (M keeps its own)
    int n;
} InverseTask;

// Rows j0..j0+count-1 of Y, each a forward substitution on its own:
// Y[j][j] = 1 / M[j][j], Y[j][i] = -(sum_{k=j}^{i-1} M[i][k] Y[j][k]) / M[i][i],
// the sum in four lanes by k - j, then the lanes in order. Rows i of M are
// read by every row of the tile.
VECTOR_CLONES static void inverse_rows(double *a, double *y_diagonal, int n, int j0, int count) {
    for (int j = j0; j < j0 + count; j++) y_diagonal[j] = 1.0 / a[(size_t)j * n + j];
    for (int i = j0 + 1; i < n; i++) {
        const double *m = a + (size_t)i * n;
        for (int j = j0; j < j0 + count && j < i; j++) {
            const double *y = a + (size_t)j * n;
            double lanes[4] = { 0 }, sum = m[j] * y_diagonal[j];
            int k = j + 1;
            for (; k + 4 <= i; k += 4)
                for (int l = 0; l < 4; l++) lanes[l] += m[k + l] * y[k + l];
            for (; k < i; k++) sum += m[k] * y[k];
            a[(size_t)j * n + i] = -(sum + ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))) / m[i];
        }
    }
}

static void inverse_task(void *arg, int thread, int n_threads) {
    InverseTask *t = arg;
    for (int j0 = INVERSE_TILE * thread; j0 < t->n; j0 += INVERSE_TILE * n_threads)   // tiles of rows, round-robin
        inverse_rows(t->a, t->y_diagonal, t->n, j0, t->n - j0 < INVERSE_TILE ? t->n - j0 : INVERSE_TILE);
}

#define GPTQ_DAMP 0.01       // of H's mean diagonal, added to its diagonal (the paper's 1 %)

// The inverse Hessian as GPTQ's loop reads it; the matrices that read the
// same inputs (wq wk wv; w1 w3) share one.
typedef struct {
    int cols;
    float *u;                // (cols, cols) upper: U with U^T U = (H + damping)^-1
    float *inverse_d2;       // (cols,) 1 / U_cc^2: SparseGPT's score weights
    uint8_t *dead;           // (cols,) 1: no input reaches column c (H_cc = 0): its weights become 0
} InverseHessian;

// From H (n, n), which it overwrites and frees. A dead column's row of H
// becomes the identity's, the diagonal is damped by 1 % of its mean (and by
// twice as much again while floating point finds it not positive definite),
// and H is read backwards in place (J H J, symmetric too), factored in its
// lower triangle and inverted into its upper one. name: for messages.
static InverseHessian invert_hessian(ThreadPool *pool, double *h, int n, const char *name) {
    InverseHessian ih = { n, xcalloc((size_t)n * n, sizeof(float), "the inverse Hessian's factor"),
                          xcalloc((size_t)n, sizeof(float), "the inverse Hessian"), xcalloc((size_t)n, 1, "the inverse Hessian") };
    double mean = 0, *diagonal = xcalloc((size_t)n, sizeof(double), "the inverse Hessian");
    for (int c = 0; c < n; c++) mean += h[(size_t)c * n + c];
    mean = mean > 0 ? mean / n : 1;
    for (int c = 0; c < n; c++)
        if (h[(size_t)c * n + c] == 0) { ih.dead[c] = 1; h[(size_t)c * n + c] = 1; }
    for (size_t i = 0; i < (size_t)n * n / 2; i++) {   // J H J in place: entry (i, j) <-> (n-1-i, n-1-j)
        double swap = h[i];
        h[i] = h[(size_t)n * n - 1 - i];
        h[(size_t)n * n - 1 - i] = swap;
    }
    for (int c = 0; c < n; c++) diagonal[c] = h[(size_t)c * n + c];
    double damp = GPTQ_DAMP * mean;
    for (int attempt = 0;; attempt++) {
        for (int c = 0; c < n; c++) h[(size_t)c * n + c] = diagonal[c] + damp;
        if (cholesky_lower(pool, h, n)) break;
        if (attempt == 5) die("%s: its inputs' Hessian is not positive definite even damped by %g", name, damp);
        for (int i = 0; i < n; i++)   // the strict upper triangle still holds the symmetric original
            for (int j = 0; j < i; j++) h[(size_t)i * n + j] = h[(size_t)j * n + i];
        damp *= 3;   // 1 %, 3 %, 9 %, ... of the mean
    }
    double *y_diagonal = diagonal;   // Y's diagonal (M keeps its own), reusing the buffer
    InverseTask task = { h, y_diagonal, n };
    pool_run(pool, inverse_task, &task);
    for (int r = 0; r < n; r++) {   // U[r][c] = (M^-1)[n-1-r][n-1-c] = Y[n-1-c][n-1-r]
        ih.u[(size_t)r * n + r] = (float)y_diagonal[n - 1 - r];
        for (int c = r + 1; c < n; c++) ih.u[(size_t)r * n + c] = (float)h[(size_t)(n - 1 - c) * n + (n - 1 - r)];
        ih.inverse_d2[r] = 1.0f / (ih.u[(size_t)r * n + r] * ih.u[(size_t)r * n + r]);
    }
    free(diagonal);
    free(h);
    return ih;
}

static void free_inverse_hessian(InverseHessian *ih) {
    free(ih->u);
    free(ih->inverse_d2);
    free(ih->dead);
}

// ----------------------------------------------------------------------------
// One matrix: what is done to it, and the column loop.

enum PruneMethod { PRUNE_NONE, PRUNE_WANDA, PRUNE_SPARSEGPT };

typedef struct {             // export --prune METHOD --sparsity S
    int method;              // PruneMethod
    int two_of_four;         // 2:4 (two of every four consecutive weights of a row pruned)
    double fraction;         // else: the share of the weights pruned (per row for Wanda, per block for SparseGPT)
} Pruning;

typedef struct {             // how one matrix is rounded
    int type, group_size;    // a quantized type (codes written), or TYPE_F32 (pruned only)
    int gptq;                // rounding errors spread through H^-1
    Pruning prune;
} MatrixJob;

#define GPTQ_BLOCK 128       // columns whose updates to the later ones wait (lazy batch updates); at least a group
#define GPTQ_TILE 8          // rows whose updates past a block read U's rows once

// The k weights of least score among count, marked 1 in mask (ties: the lower
// index first). scores is reordered.
static void mark_least(float *scores, const float *original, int count, int k, uint8_t *mask) {
    memset(mask, 0, (size_t)count);
    if (k <= 0) return;
    if (k > count) k = count;
    int lo = 0, hi = count - 1, want = k - 1;   // quickselect: scores[want] becomes the k-th least
    while (lo < hi) {
        float pivot = scores[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scores[i] < pivot) i++;
            while (scores[j] > pivot) j--;
            if (i <= j) { float swap = scores[i]; scores[i] = scores[j]; scores[j] = swap; i++; j--; }
        }
        if (want <= j) hi = j; else if (want >= i) lo = i; else break;
    }
    float threshold = scores[want];
    int below = 0;
    for (int i = 0; i < count; i++) below += original[i] < threshold;
    int ties = k - below;
    for (int i = 0; i < count; i++)
        if (original[i] < threshold || (original[i] == threshold && ties-- > 0)) mask[i] = 1;
}

// Wanda's mask for every row: score w^2 x_c^2 (|w| ||x_c|| squared, the same
// order). mask (rows, cols), 1: pruned.
static void wanda_mask(const float *w, int rows, int cols, const float *importance, const Pruning *prune, uint8_t *mask) {
    float *kept = xcalloc((size_t)cols, sizeof(float), "Wanda"), *scores = xcalloc((size_t)cols, sizeof(float), "Wanda");
    float *original = xcalloc((size_t)cols, sizeof(float), "Wanda");
    for (int r = 0; r < rows; r++) {
        const float *row = w + (size_t)r * cols;
        uint8_t *m = mask + (size_t)r * cols;
        if (prune->two_of_four) {   // (a weight that is zero already counts as pruned: it scores least)
            memcpy(kept, row, (size_t)cols * sizeof(float));
            keep_2_of_4(kept, importance, cols);
            for (int c = 0; c < cols; c++) m[c] = kept[c] == 0.0f;
        } else {
            for (int c = 0; c < cols; c++) original[c] = scores[c] = row[c] * row[c] * importance[c];
            mark_least(scores, original, cols, (int)((double)cols * prune->fraction), m);
        }
    }
    free(kept);
    free(scores);
    free(original);
}

typedef struct {
    float *w;                // (rows, cols): in, the weights; out, as rounded (dequantized) or pruned
    int rows, cols;
    const float *u;          // (cols, cols) upper: U^T U = H^-1; NULL: no error spread (Wanda alone)
    const float *importance; // (cols,) H's diagonal undamped, mean x_c^2: the scale search's weights
    const MatrixJob *job;
    const uint8_t *mask;     // (rows, cols) 1: pruned, decided before the loop (Wanda's); or NULL
    uint8_t *block_mask;     // (rows, i2 - i1) SparseGPT's for this block (a share); or NULL
    int i1, i2;              // the block of columns
    uint8_t *codes;          // (rows, row code bytes), zeroed: the levels written when rounding in the loop
    uint16_t *scales;        // (rows, groups)
    const float *inverse_d2; // (cols,) 1 / U_cc^2: SparseGPT's 2:4 score weights
} ColumnBlockTask;

VECTOR_CLONES static void subtract_scaled(float *y, float a, const float *x, int n) {
    for (int j = 0; j < n; j++) y[j] -= a * x[j];
}

// The errors of the block's columns (e: (tile rows, GPTQ block)) spread over
// the columns past it: w[r][j] -= sum_k e[r][k] U[i1+k][j], k in order.
VECTOR_CLONES static void spread_block_errors(float *w, int cols, const float *u, const float *e, int e_stride,
                                              int tile_rows, int i1, int i2) {
    for (int k = i1; k < i2; k++) {
        const float *u_row = u + (size_t)k * cols;
        for (int r = 0; r < tile_rows; r++) {
            float *row = w + (size_t)r * cols, error = e[(size_t)r * e_stride + (k - i1)];
            for (int j = i2; j < cols; j++) row[j] -= error * u_row[j];
        }
    }
}

// Whether weight (r, c) is pruned, as far as the loop knows at column c.
static int is_pruned(const ColumnBlockTask *t, const uint8_t *quad_mask, int r, int c) {
    if (t->mask) return t->mask[(size_t)r * t->cols + c];
    if (t->block_mask) return t->block_mask[(size_t)r * (t->i2 - t->i1) + (c - t->i1)];
    return quad_mask ? quad_mask[c % 4] : 0;
}

// A group's scale from its current weights, those known (or, for 2:4
// SparseGPT, expected) to be pruned left out.
static float group_scale(const ColumnBlockTask *t, int r, int start, uint16_t *scale_out) {
    const float *row = t->w + (size_t)r * t->cols;
    int count = t->cols - start < t->job->group_size ? t->cols - start : t->job->group_size;
    float group[MAX_GROUP_SIZE];
    for (int c = 0; c < count; c++) group[c] = is_pruned(t, NULL, r, start + c) ? 0.0f : row[start + c];
    if (t->job->prune.method == PRUNE_SPARSEGPT && t->job->prune.two_of_four)
        keep_2_of_4(group, t->inverse_d2 + start, count);   // least w^2 / U_cc^2 of each four
    *scale_out = search_scale(quant_layout((uint32_t)t->job->type), group, t->importance + start, count);
    return fp16_to_fp32(*scale_out);
}

// Row r's columns i1..i2-1 in order: pruned or rounded, each error spread over
// the block's later columns now and recorded in e (i2 - i1) for the rest.
static void round_block_row(const ColumnBlockTask *t, int r, float *e) {
    const MatrixJob *job = t->job;
    int quantized = job->gptq && is_quantized((uint32_t)job->type);
    const QuantLayout *layout = quantized ? quant_layout((uint32_t)job->type) : NULL;
    float *row = t->w + (size_t)r * t->cols, scale = 0, inverse = 0;
    int n_groups = quantized ? (int)round_up((size_t)t->cols, (size_t)job->group_size) / job->group_size : 0;
    size_t row_bytes = quantized ? row_code_bytes(layout, round_up((size_t)t->cols, (size_t)job->group_size)) : 0;
    int sparsegpt_quads = job->prune.method == PRUNE_SPARSEGPT && job->prune.two_of_four;
    uint8_t quad_mask[4] = { 0 };
    for (int i = t->i1; i < t->i2; i++) {
        if (quantized && i % job->group_size == 0) {
            scale = group_scale(t, r, i, &t->scales[(size_t)r * n_groups + i / job->group_size]);
            inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        }
        if (sparsegpt_quads && i % 4 == 0) {   // the two of least w^2 / U_cc^2 of these four, now
            float quad[4];
            int count = t->cols - i < 4 ? t->cols - i : 4;
            memcpy(quad, row + i, (size_t)count * sizeof(float));
            keep_2_of_4(quad, t->inverse_d2 + i, count);
            for (int c = 0; c < 4; c++) quad_mask[c] = c < count && quad[c] == 0.0f;
        }
        int pruned = is_pruned(t, sparsegpt_quads ? quad_mask : NULL, r, i), level = 0;
        float value = row[i];
        if (pruned) value = 0.0f;
        else if (quantized) { level = quant_level(layout, row[i], inverse); value = scale * (float)level; }
        if (quantized) layout->put_level(t->codes + (size_t)r * row_bytes + (size_t)(i / Q_BLOCK) * layout->block_bytes,
                                         i % Q_BLOCK, level);
        if (t->u) {
            float error = (row[i] - value) / t->u[(size_t)i * t->cols + i];
            subtract_scaled(row + i + 1, error, t->u + (size_t)i * t->cols + i + 1, t->i2 - i - 1);
            e[i - t->i1] = error;
        }
        row[i] = value;
    }
    if (quantized && t->i2 == t->cols)   // the padding past the last column: level 0
        for (int i = t->cols; i < (int)round_up((size_t)t->cols, (size_t)job->group_size); i++)
            layout->put_level(t->codes + (size_t)r * row_bytes + (size_t)(i / Q_BLOCK) * layout->block_bytes, i % Q_BLOCK, 0);
}

static void column_block_task(void *arg, int thread, int n_threads) {
    ColumnBlockTask *t = arg;
    int first, last, width = t->i2 - t->i1;
    thread_slice(t->rows, thread, n_threads, &first, &last);
    float *e = xcalloc((size_t)GPTQ_TILE * width, sizeof(float), "GPTQ");
    for (int r0 = first; r0 < last; r0 += GPTQ_TILE) {
        int tile = last - r0 < GPTQ_TILE ? last - r0 : GPTQ_TILE;
        for (int r = r0; r < r0 + tile; r++) round_block_row(t, r, e + (size_t)(r - r0) * width);
        if (t->u && t->i2 < t->cols) spread_block_errors(t->w + (size_t)r0 * t->cols, t->cols, t->u, e, width, tile, t->i1, t->i2);
    }
    free(e);
}

// SparseGPT's share for the block: its rows x width weights of least
// w^2 / U_cc^2, chosen among all of them (the paper's adaptive mask).
static void sparsegpt_block_mask(ColumnBlockTask *t) {
    int width = t->i2 - t->i1;
    size_t count = (size_t)t->rows * width;
    float *scores = xcalloc(count, sizeof(float), "SparseGPT"), *original = xcalloc(count, sizeof(float), "SparseGPT");
    for (int r = 0; r < t->rows; r++)
        for (int c = 0; c < width; c++) {
            float v = t->w[(size_t)r * t->cols + t->i1 + c];
            original[(size_t)r * width + c] = scores[(size_t)r * width + c] = v * v * t->inverse_d2[t->i1 + c];
        }
    if (count > INT_MAX) die("SparseGPT: a block of %zu weights is too large", count);
    mark_least(scores, original, (int)count, (int)llround((double)count * t->job->prune.fraction), t->block_mask);
    free(scores);
    free(original);
}

// Rows rounded on their own after pruning (no error spread): the rounding
// export would give them (quantize_row, each error weighted by importance).
typedef struct { float *w; int rows, cols; const MatrixJob *job; const float *importance; uint8_t *codes; uint16_t *scales; } RowRoundingTask;

static void row_rounding_task(void *arg, int thread, int n_threads) {
    RowRoundingTask *t = arg;
    int first, last, padded = (int)round_up((size_t)t->cols, (size_t)t->job->group_size);
    thread_slice(t->rows, thread, n_threads, &first, &last);
    size_t row_bytes = row_code_bytes(quant_layout((uint32_t)t->job->type), (uint64_t)padded);
    Tensor row = { .type = t->job->type, .rows = 1, .cols = t->cols, .cols_padded = padded, .group_size = t->job->group_size };
    for (int r = first; r < last; r++) {
        row.codes = t->codes + (size_t)r * row_bytes;
        row.scales = t->scales + (size_t)r * (padded / t->job->group_size);
        quantize_row((uint32_t)t->job->type, t->w + (size_t)r * t->cols, t->importance, t->cols, padded, t->job->group_size,
                     (uint8_t *)row.codes, (uint16_t *)row.scales);
        dequantize_row(t->w + (size_t)r * t->cols, &row, 0);
    }
}

// Whether job spreads errors through the inverse Hessian (GPTQ, SparseGPT)
// and so needs one.
static int needs_inverse_hessian(const MatrixJob *job) { return job->gptq || job->prune.method == PRUNE_SPARSEGPT; }

// The matrix w (rows, cols) rounded and pruned as job says, against the
// inverse Hessian ih of its inputs (NULL when job needs none: Wanda alone),
// each input's importance being H's diagonal (mean x_c^2). On return w holds
// the weights as they will be written (dequantized), and for a quantized type
// codes (rows, row bytes) and scales (rows, groups) hold them as quantize_row
// lays them out.
static void round_matrix(ThreadPool *pool, float *w, int rows, int cols, const InverseHessian *ih, const float *importance,
                         const MatrixJob *job, uint8_t *codes, uint16_t *scales) {
    int quantized = is_quantized((uint32_t)job->type), spread = needs_inverse_hessian(job);
    if (spread && !ih) die("internal error: GPTQ and SparseGPT need the inverse Hessian");
    if (quantized) memset(codes, 0, (size_t)rows * row_code_bytes(quant_layout((uint32_t)job->type),
                                                                 round_up((size_t)cols, (size_t)job->group_size)));
    for (int c = 0; ih && c < cols; c++)   // a column no input reaches
        if (ih->dead[c]) for (int r = 0; r < rows; r++) w[(size_t)r * cols + c] = 0.0f;
    uint8_t *mask = NULL;   // decided before the loop: Wanda's, or Q4S's two of four when nothing else prunes
    Pruning two_of_four = { PRUNE_WANDA, 1, 0.5 };
    if (job->prune.method == PRUNE_WANDA || (job->type == TYPE_Q4S && job->prune.method == PRUNE_NONE)) {
        mask = xcalloc((size_t)rows * cols, 1, "a pruning mask");
        wanda_mask(w, rows, cols, importance, job->prune.method == PRUNE_WANDA ? &job->prune : &two_of_four, mask);
    }
    int block = job->group_size > GPTQ_BLOCK ? job->group_size : GPTQ_BLOCK;
    int share = job->prune.method == PRUNE_SPARSEGPT && !job->prune.two_of_four;
    uint8_t *block_mask = share ? xcalloc((size_t)rows * block, 1, "a pruning mask") : NULL;
    if (spread || mask)
        for (int i1 = 0; i1 < cols; i1 += block) {
            ColumnBlockTask task = { w, rows, cols, spread ? ih->u : NULL, importance, job, mask, block_mask, i1,
                                     i1 + block < cols ? i1 + block : cols, codes, scales, spread ? ih->inverse_d2 : NULL };
            if (share) sparsegpt_block_mask(&task);
            pool_run(pool, column_block_task, &task);
        }
    if (quantized && !job->gptq) {   // pruned only: each row rounded on its own, as export would
        RowRoundingTask task = { w, rows, cols, job, importance, codes, scales };
        pool_run(pool, row_rounding_task, &task);
    }
    free(mask);
    free(block_mask);
}

// ----------------------------------------------------------------------------
// The spill: each matrix's result (codes and scales, or fp32 rows when only
// pruned for an fp32 output) in an unlinked temporary file in $TMPDIR (or
// /tmp), read back by the checkpoint's writer. The system removes it when
// export ends, however it ends.

typedef struct {
    int kind, layer;         // the tensor (TensorKind; layer -1 for model-wide ones)
    int type, group_size;    // its codes' type and group, or TYPE_F32: fp32 rows
    int rows, cols;
    uint64_t offset;         // codes (rows, row bytes) then scales (rows, groups); or (rows, cols) floats
} SpilledTensor;

typedef struct {
    int fd;
    SpilledTensor *tensors;
    int count;
    uint64_t end;
} Spill;

static void spill_open(Spill *s) {
    const char *dir = getenv("TMPDIR");
    char *path = xcalloc(strlen(dir && *dir ? dir : "/tmp") + 32, 1, "path");
    sprintf(path, "%s/edge-export-XXXXXX", dir && *dir ? dir : "/tmp");
    s->fd = mkstemp(path);
    if (s->fd < 0) die("cannot create a temporary file in %s: %s (TMPDIR chooses the directory)", dir && *dir ? dir : "/tmp",
                       strerror(errno));
    unlink(path);
    free(path);
    s->tensors = NULL;
    s->count = 0;
    s->end = 0;
}

static void spill_close(Spill *s) {
    if (s->fd >= 0) close(s->fd);
    free(s->tensors);
    s->fd = -1;
}

static void spill_write(Spill *s, const void *data, size_t size) {
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pwrite(s->fd, p, size, (off_t)s->end);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("cannot write export's temporary file: %s", n < 0 ? strerror(errno) : "short write");
        p += n;
        size -= (size_t)n;
        s->end += (uint64_t)n;
    }
}

static void spill_read(const Spill *s, void *data, size_t size, uint64_t offset) {
    uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pread(s->fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("cannot read export's temporary file: %s", n < 0 ? strerror(errno) : "short read");
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
}

// A matrix's result, appended: codes and scales for a quantized type, else w.
static void spill_put(Spill *s, int kind, int layer, const MatrixJob *job, int rows, int cols, const float *w,
                      const uint8_t *codes, const uint16_t *scales) {
    s->tensors = realloc(s->tensors, (size_t)(s->count + 1) * sizeof *s->tensors);
    if (!s->tensors) die("out of memory");
    int quantized = is_quantized((uint32_t)job->type);
    s->tensors[s->count++] = (SpilledTensor){ kind, layer, quantized ? job->type : TYPE_F32, quantized ? job->group_size : 0,
                                              rows, cols, s->end };
    if (!quantized) { spill_write(s, w, (size_t)rows * cols * sizeof(float)); return; }
    size_t padded = round_up((size_t)cols, (size_t)job->group_size);
    spill_write(s, codes, (size_t)rows * row_code_bytes(quant_layout((uint32_t)job->type), padded));
    spill_write(s, scales, (size_t)rows * (padded / job->group_size) * sizeof(uint16_t));
}

static const SpilledTensor *spill_find(const Spill *s, int kind, int layer) {
    for (int i = 0; s && i < s->count; i++)
        if (s->tensors[i].kind == kind && s->tensors[i].layer == layer) return &s->tensors[i];
    return NULL;
}

// Rows [begin, end) as codes and scales of type and group_size; 0 when the
// tensor was spilled otherwise.
static int spill_read_codes(const Spill *s, const SpilledTensor *t, int type, int group_size, int begin, int end,
                            uint8_t *codes, uint16_t *scales) {
    if (t->type != type || t->group_size != group_size) return 0;
    size_t padded = round_up((size_t)t->cols, (size_t)group_size), groups = padded / group_size;
    size_t row_bytes = row_code_bytes(quant_layout((uint32_t)type), padded);
    spill_read(s, codes, (size_t)(end - begin) * row_bytes, t->offset + (uint64_t)begin * row_bytes);
    spill_read(s, scales, (size_t)(end - begin) * groups * sizeof(uint16_t),
               t->offset + (uint64_t)t->rows * row_bytes + (uint64_t)begin * groups * sizeof(uint16_t));
    return 1;
}

// Rows [begin, end) as floats (a quantized tensor dequantized).
static void spill_read_rows(const Spill *s, const SpilledTensor *t, int begin, int end, float *out) {
    if (t->type == TYPE_F32) {
        spill_read(s, out, (size_t)(end - begin) * t->cols * sizeof(float), t->offset + (uint64_t)begin * t->cols * sizeof(float));
        return;
    }
    int padded = (int)round_up((size_t)t->cols, (size_t)t->group_size), groups = padded / t->group_size;
    size_t row_bytes = row_code_bytes(quant_layout((uint32_t)t->type), (uint64_t)padded);
    uint8_t *codes = xcalloc(row_bytes, 1, "a row");
    uint16_t *scales = xcalloc((size_t)groups, sizeof(uint16_t), "a row");
    Tensor row = { .type = t->type, .rows = 1, .cols = t->cols, .cols_padded = padded, .group_size = t->group_size,
                   .codes = codes, .scales = scales };
    for (int r = begin; r < end; r++) {
        spill_read_codes(s, t, t->type, t->group_size, r, r + 1, codes, scales);
        dequantize_row(out + (size_t)(r - begin) * t->cols, &row, 0);
    }
    free(codes);
    free(scales);
}

#pragma GCC diagnostic pop
#endif

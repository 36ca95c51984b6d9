/*
exercises/steps.c — the lab for students: the functions of tools/lab/steps.c
with their bodies to write. `make lab-student` builds lab.c over this file;
its check says which step is not written yet or wrong (and where), and once
every step you asked for passes it times them:

    make lab-student                   every step (fails until all are written)
    make lab-student LAB_STEPS=0,1     only the steps you have done so far

Read docs/LAB.md first. What you have (lab.c, and runq.c through it):
    Tensor w:        w->rows, w->cols_padded (a multiple of 32), w->group_size
    row_nibbles(w, r)        row r's cols_padded/2 bytes of packed weights
    weight_scale(w, r, b)    the float scale of row r's block b (fp16 in the file)
    QuantizedActivations x:  x->values[i] (int8, cols_padded of them),
                             x->scales[b] (one float per block of 32)
The layout: block b of a row is bytes [16b, 16b + 16); byte j of it holds
weight 32b + j in its low nibble and weight 32b + j + 16 in its high nibble;
a nibble q means (q - 8) * scale. So, for row r:
    out[r] = sum over blocks b of weight_scale(w, r, b) * x->scales[b]
                                  * sum_j (q_j - 8) * x->values[32b + j]
Keep the block's inner sum in an int32: it is exact.
The solutions are in tools/lab/steps.c: try first.
*/

// ----------------------------------------------------------------------------
// Step 0: the reference. Return row `row` of W . x, one weight at a time.

static float dot_row_naive(const Tensor *w, int row, const QuantizedActivations *x) {
    (void)w; (void)row; (void)x;
    // TODO step 0: loop over the blocks, then over the 32 weights of a block
    return NAN;
}

static void rows_naive(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    for (int r = row_begin; r < row_end; r++) out[r] = dot_row_naive(w, r, x);
}

// ----------------------------------------------------------------------------
// Step 1: loop unrolling. Fill out[row_begin..row_end) like rows_naive, but
// four rows at a time: load each activation once and use it for four
// independent int32 sums (four chains of additions the core can overlap).
// Unpack a byte's two nibbles together (& 0x0F and >> 4) instead of testing j.
// Rows left over (fewer than four) can go through dot_row_naive.

static void rows_unrolled(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    (void)out; (void)w; (void)x; (void)row_begin; (void)row_end;
    // TODO step 1
}

// ----------------------------------------------------------------------------
// Step 2: multithreading. Cut rows 0..w->rows into n_threads contiguous
// slices (RowSlice, in lab.c), start a pthread per slice with
// pthread_create(&id, NULL, run_slice, &slice), run the first slice on the
// calling thread, then pthread_join the others. Careful: n_threads may be
// larger than the number of rows. Rows are independent: no locks needed.

static void *run_slice(void *arg) {
    (void)arg;
    // TODO step 2: call the slice's rows function on its range
    return NULL;
}

static void rows_on_threads(RowsFn rows, float *out, const Tensor *w, const QuantizedActivations *x, int n_threads) {
    (void)rows; (void)out; (void)w; (void)x; (void)n_threads;
    // TODO step 2 (at most MAX_LAB_THREADS threads)
}

// ----------------------------------------------------------------------------
// Step 3: SIMD. simd.h gives you, for this machine's instruction set:
//     LabWeights unpack_block(nibbles)    a block's 32 weights as int8 (q - 8)
//     LabAcc acc_zero(); acc = acc_add(acc, lanes, scale); float acc_sum(acc)
//     weight_scale_simd(w, r, b): weight_scale by a vector-unit instruction (use
//     it here: a call to the plain-C conversion inside AVX2 code can be slow)
// Write dot_block_lanes for your instruction set: w . x over one block of 32
// as int32 lanes (their sum is the block's integer dot product), then
// dot_row_simd with it.
//   AVX2: _mm256_maddubs_epi16(unsigned bytes, signed bytes) multiplies and
//     adds pairs into int16; w is signed, so give it |w| (_mm256_sign_epi8(w, w))
//     and move w's sign onto x (_mm256_sign_epi8(x, w)); then
//     _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)) gives 8 int32 lanes.
//   NEON with dotprod: vdotq_s32(acc, w.low, x[0..15]) and again for w.high.
//   NEON without: vmull_s8 / vmlal_s8 (int8 x int8 -> int16), then
//     vpaddlq_s16 / vpadalq_s16 into int32 lanes.

LAB_TARGET static inline LabLanes dot_block_lanes(LabWeights w, const int8_t *x) {
    (void)w; (void)x;
    LabLanes lanes;
    memset(&lanes, 0, sizeof lanes);
    // TODO step 3
    return lanes;
}

LAB_TARGET static float dot_row_simd(const Tensor *w, int row, const QuantizedActivations *x) {
    (void)w; (void)row; (void)x;
    // TODO step 3: acc_add each block's lanes with the block's two scales multiplied
    return NAN;
}

LAB_TARGET static void rows_simd(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    for (int r = row_begin; r < row_end; r++) out[r] = dot_row_simd(w, r, x);
}

// ----------------------------------------------------------------------------
// Step 4: all combined. lab.c runs this on your step 2 threads; write it as
// step 1 over step 3: four rows at a time, four accumulators, each block of
// activations used by four dot_block_lanes; leftover rows by dot_row_simd.

LAB_TARGET static void rows_simd_unrolled(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    (void)out; (void)w; (void)x; (void)row_begin; (void)row_end;
    // TODO step 4
}

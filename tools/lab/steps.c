/*
steps.c — the lab's solutions: runq's int4 x int8 matrix-vector product taken
from a naive loop to a fast kernel in numbered steps. lab.c includes this file
(or, for `make lab-student`, exercises/steps.c: the same functions with the
bodies left to write) after runq.c, whose Tensor and QuantizedActivations
types and fp16_to_fp32 it uses. docs/LAB.md explains each step.

Every step computes out (rows,) = W (rows, cols) . x (cols,) for one token:
    out[r] = sum over blocks b of  wscale(r, b) * xscale(b) * sum_j (q[r][32b+j] - 8) * x[32b+j]
with the weights in runq's layout (blocks of 32: byte j of a block holds
weight j in its low nibble and weight j+16 in its high nibble; one fp16 scale
per group of group_size weights) and x quantized by runq's quantize_q8 (int8
in blocks of 32, one float scale per block). The inner sum of a block is an
exact integer; only the float sum over blocks depends on the order.
It is not runq's kernel: runq's AVX2 and NEON tiles are faster still.
*/

// ----------------------------------------------------------------------------
// Step 0: the reference. One row at a time, one weight at a time.

static float dot_row_naive(const Tensor *w, int row, const QuantizedActivations *x) {
    const uint8_t *nibbles = row_nibbles(w, row);
    float sum = 0.0f;
    for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
        int32_t isum = 0;
        for (int j = 0; j < Q_BLOCK; j++) {
            uint8_t byte = nibbles[block * (Q_BLOCK / 2) + j % (Q_BLOCK / 2)];
            int q = j < Q_BLOCK / 2 ? (byte & 0x0F) : (byte >> 4);
            isum += (q - 8) * x->values[block * Q_BLOCK + j];
        }
        sum += weight_scale(w, row, block) * x->scales[block] * (float)isum;
    }
    return sum;
}

static void rows_naive(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    for (int r = row_begin; r < row_end; r++) out[r] = dot_row_naive(w, r, x);
}

// ----------------------------------------------------------------------------
// Step 1: loop unrolling. Four rows at a time: each activation byte, loaded
// once, feeds four independent integer sums, so the core has four chains of
// additions to overlap instead of one (instruction-level parallelism), and
// the block loop unpacks a byte's two nibbles together instead of testing j.

static void rows_unrolled(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    int r = row_begin;
    for (; r + 4 <= row_end; r += 4) {
        const uint8_t *n0 = row_nibbles(w, r), *n1 = row_nibbles(w, r + 1);
        const uint8_t *n2 = row_nibbles(w, r + 2), *n3 = row_nibbles(w, r + 3);
        float sum0 = 0.0f, sum1 = 0.0f, sum2 = 0.0f, sum3 = 0.0f;
        for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
            const int8_t *a = x->values + block * Q_BLOCK;
            int b = block * (Q_BLOCK / 2);
            int32_t i0 = 0, i1 = 0, i2 = 0, i3 = 0;
            for (int j = 0; j < Q_BLOCK / 2; j++) {
                int low = a[j], high = a[j + Q_BLOCK / 2];
                i0 += ((n0[b + j] & 0x0F) - 8) * low + ((n0[b + j] >> 4) - 8) * high;
                i1 += ((n1[b + j] & 0x0F) - 8) * low + ((n1[b + j] >> 4) - 8) * high;
                i2 += ((n2[b + j] & 0x0F) - 8) * low + ((n2[b + j] >> 4) - 8) * high;
                i3 += ((n3[b + j] & 0x0F) - 8) * low + ((n3[b + j] >> 4) - 8) * high;
            }
            float xs = x->scales[block];
            sum0 += weight_scale(w, r, block) * xs * (float)i0;
            sum1 += weight_scale(w, r + 1, block) * xs * (float)i1;
            sum2 += weight_scale(w, r + 2, block) * xs * (float)i2;
            sum3 += weight_scale(w, r + 3, block) * xs * (float)i3;
        }
        out[r] = sum0; out[r + 1] = sum1; out[r + 2] = sum2; out[r + 3] = sum3;
    }
    rows_naive(out, w, x, r, row_end);   // the last rows % 4
}

// ----------------------------------------------------------------------------
// Step 2: multithreading. The rows are cut into n_threads contiguous slices;
// each slice goes to its own pthread (the caller takes the first), which runs
// the step 0 loop over it. Rows are independent, so no locks: every thread
// writes its own part of out. The threads are created and joined on every
// call, which costs tens of microseconds: step 5 shows runq's pool, which
// creates them once.

static void *run_slice(void *arg) {
    RowSlice *slice = arg;
    slice->rows(slice->out, slice->w, slice->x, slice->row_begin, slice->row_end);
    return NULL;
}

static void rows_on_threads(RowsFn rows, float *out, const Tensor *w, const QuantizedActivations *x, int n_threads) {
    RowSlice slices[MAX_LAB_THREADS];
    pthread_t ids[MAX_LAB_THREADS];
    int per_thread = (w->rows + n_threads - 1) / n_threads;
    for (int i = 0; i < n_threads; i++) {
        int begin = i * per_thread < w->rows ? i * per_thread : w->rows;
        int end = begin + per_thread < w->rows ? begin + per_thread : w->rows;
        slices[i] = (RowSlice){ rows, out, w, x, begin, end };
        if (i > 0 && pthread_create(&ids[i], NULL, run_slice, &slices[i]) != 0)
            die("cannot start thread %d of %d", i, n_threads);
    }
    run_slice(&slices[0]);
    for (int i = 1; i < n_threads; i++) pthread_join(ids[i], NULL);
}

// ----------------------------------------------------------------------------
// Step 3: SIMD. One instruction multiplies and adds many int8 pairs: AVX2's
// maddubs (32 byte pairs into 16 int16 sums) on x86, NEON's sdot (16 byte
// pairs into 4 int32 sums) or widening multiplies on ARM. A block of 32
// weights becomes one vector of int8 (q - 8), its products land in 8 (AVX2)
// or 4 (NEON) int32 lanes, and the lanes, converted to float and scaled,
// accumulate in a float vector, summed across once per row at the end.
// simd.h holds the plumbing (unpacking, the float accumulators) per ISA.

// w . x for one block as int32 lanes: the instruction-set specific heart.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// maddubs multiplies an unsigned byte by a signed one and adds neighbouring
// pairs into int16, so w's sign moves onto x: |w| * (x * sign(w)) = w * x.
// Each pair sum is at most 2 * 8 * 127: no saturation. madd by 1 then adds
// neighbouring int16 into 8 int32 lanes.
LAB_TARGET static inline LabLanes dot_block_lanes(LabWeights w, const int8_t *x) {
    __m256i a = _mm256_loadu_si256((const __m256i *)x);
    __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#elif defined(__aarch64__) && defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
// sdot: each int32 lane += the dot product of 4 int8 pairs (Armv8.2 dotprod)
static inline LabLanes dot_block_lanes(LabWeights w, const int8_t *x) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w.low, vld1q_s8(x)), w.high, vld1q_s8(x + 16));
}
#elif defined(__aarch64__) && defined(__ARM_NEON)
// Armv8.0 (Cortex-A72): widening int8 x int8 -> int16 multiplies (|product| <=
// 8 * 128, two summed still fit int16), then pairwise widening adds into int32.
static inline LabLanes dot_block_lanes(LabWeights w, const int8_t *x) {
    int8x16_t a_low = vld1q_s8(x), a_high = vld1q_s8(x + 16);
    int16x8_t p0 = vmlal_s8(vmull_s8(vget_low_s8(w.low), vget_low_s8(a_low)), vget_low_s8(w.high), vget_low_s8(a_high));
    int16x8_t p1 = vmlal_s8(vmull_s8(vget_high_s8(w.low), vget_high_s8(a_low)), vget_high_s8(w.high), vget_high_s8(a_high));
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}
#else
static inline LabLanes dot_block_lanes(LabWeights w, const int8_t *x) {
    int32_t sum = 0;
    for (int j = 0; j < 32; j++) sum += w.q[j] * x[j];
    return sum;
}
#endif

LAB_TARGET static float dot_row_simd(const Tensor *w, int row, const QuantizedActivations *x) {
    const uint8_t *nibbles = row_nibbles(w, row);
    LabAcc acc = acc_zero();
    for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
        LabLanes lanes = dot_block_lanes(unpack_block(nibbles + block * (Q_BLOCK / 2)), x->values + block * Q_BLOCK);
        acc = acc_add(acc, lanes, weight_scale_simd(w, row, block) * x->scales[block]);
    }
    return acc_sum(acc);
}

LAB_TARGET static void rows_simd(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    for (int r = row_begin; r < row_end; r++) out[r] = dot_row_simd(w, r, x);
}

// ----------------------------------------------------------------------------
// Step 4: all combined: step 2's threads, each running SIMD over tiles of four
// rows (step 1's unrolling applied to step 3's vectors).

LAB_TARGET static void rows_simd_unrolled(float *out, const Tensor *w, const QuantizedActivations *x, int row_begin, int row_end) {
    int r = row_begin;
    for (; r + 4 <= row_end; r += 4) {
        LabAcc acc[4] = { acc_zero(), acc_zero(), acc_zero(), acc_zero() };
        for (int block = 0; block < w->cols_padded / Q_BLOCK; block++) {
            const int8_t *a = x->values + block * Q_BLOCK;
            for (int i = 0; i < 4; i++) {   // a constant trip count: the compiler unrolls it
                LabLanes lanes = dot_block_lanes(unpack_block(row_nibbles(w, r + i) + block * (Q_BLOCK / 2)), a);
                acc[i] = acc_add(acc[i], lanes, weight_scale_simd(w, r + i, block) * x->scales[block]);
            }
        }
        for (int i = 0; i < 4; i++) out[r + i] = acc_sum(acc[i]);
    }
    for (; r < row_end; r++) out[r] = dot_row_simd(w, r, x);   // the last rows % 4
}


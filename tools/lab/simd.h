/*
simd.h — the vector plumbing steps 3 and 4 stand on, for both steps.c and
exercises/steps.c: which instruction set this build uses (chosen at compile
time), and a small facade over it so the row loops are written once:

    LabWeights unpack_block(nibbles)        one block's 16 bytes -> 32 int8 weights q - 8
    LabLanes   dot_block_lanes(w, x)        w . x (32 int8 pairs) as a few int32 lanes:
                                            the one function per ISA steps.c writes
    LabAcc     acc_zero(), acc_add(acc, lanes, scale), float acc_sum(acc)
                                            float lanes += scale * lanes; the total
    float      weight_scale_simd(w, r, b)   weight_scale by the ISA's fp16 conversion
                                            instruction (F16C; AArch64's fcvt)

x86: AVX2 (8 int32 lanes) and F16C, compiled with a target attribute and used
only when the CPU has them (lab_simd_runs). (runq.c's portable fp16_to_fp32,
called from a loop of AVX2 code, made step 3 two hundred times slower in an
-O2 build on the Zen 3 VM we measured on: keep the vector loop in VEX code.) AArch64: NEON (4 lanes), which every core has;
built with -march=armv8.2-a+dotprod (Cortex-A76: Raspberry Pi 5, RK3588) the
block dot is one sdot per half, and the program runs only on such a core. Anything else: plain C behind the same facade (LAB_SIMD says so).
No fused multiply-adds anywhere: the lab builds with -ffp-contract=off.
It is not runq's kernels: the lab's own, plainer, for teaching.
*/

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LAB_SIMD "avx2"
#define LAB_TARGET __attribute__((target("avx2,f16c")))
typedef __m256i LabWeights;   // 32 int8: weights 0..15 in the low 128 bits, 16..31 above
typedef __m256i LabLanes;     // 8 int32
typedef __m256 LabAcc;        // 8 float

static int lab_simd_runs(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx2") && cpu_has_f16c(); }

LAB_TARGET static inline float weight_scale_simd(const Tensor *w, int row, int block) {
    return _cvtsh_ss(weight_scale_bits(w, row, block));
}

LAB_TARGET static inline LabWeights unpack_block(const uint8_t *nibbles) {
    __m128i packed = _mm_loadu_si128((const __m128i *)nibbles);
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), _mm256_set1_epi8(0x0F));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

LAB_TARGET static inline LabAcc acc_zero(void) { return _mm256_setzero_ps(); }

LAB_TARGET static inline LabAcc acc_add(LabAcc acc, LabLanes lanes, float scale) {
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(lanes), _mm256_set1_ps(scale)));
}

LAB_TARGET static inline float acc_sum(LabAcc acc) {   // halve three times
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define LAB_TARGET
typedef struct { int8x16_t low, high; } LabWeights;   // weights 0..15, 16..31
typedef int32x4_t LabLanes;
typedef float32x4_t LabAcc;

#if defined(__ARM_FEATURE_DOTPROD)
#define LAB_SIMD "neon-sdot"
// -march=...+dotprod lets the compiler put sdot anywhere, so on an older core
// the whole program would die of an illegal instruction: main checks first.
#define LAB_BUILD_NEEDS_SIMD 1
static int lab_simd_runs(void) { return cpu_has_dotprod(); }   // runq.c: the kernel's HWCAP bits
#else
#define LAB_SIMD "neon"
static int lab_simd_runs(void) { return 1; }   // NEON: every AArch64 core
#endif

static inline LabWeights unpack_block(const uint8_t *nibbles) {
    uint8x16_t packed = vld1q_u8(nibbles);
    LabWeights w = { vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F))), vdupq_n_s8(8)),
                     vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), vdupq_n_s8(8)) };
    return w;
}

static inline LabAcc acc_zero(void) { return vdupq_n_f32(0.0f); }

static inline LabAcc acc_add(LabAcc acc, LabLanes lanes, float scale) {   // vmlaq_f32 may fuse: mul, then add
    return vaddq_f32(acc, vmulq_n_f32(vcvtq_f32_s32(lanes), scale));
}

static inline float acc_sum(LabAcc acc) { return vaddvq_f32(acc); }

static inline float weight_scale_simd(const Tensor *w, int row, int block) {
    uint16_t bits = weight_scale_bits(w, row, block);
    __fp16 half;
    memcpy(&half, &bits, sizeof half);
    return (float)half;
}

#else
#define LAB_SIMD "none (plain C)"
#define LAB_TARGET
typedef struct { int8_t q[32]; } LabWeights;
typedef int32_t LabLanes;
typedef float LabAcc;

static int lab_simd_runs(void) { return 1; }

static inline LabWeights unpack_block(const uint8_t *nibbles) {
    LabWeights w;
    for (int j = 0; j < 16; j++) {
        w.q[j] = (int8_t)((nibbles[j] & 0x0F) - 8);
        w.q[j + 16] = (int8_t)((nibbles[j] >> 4) - 8);
    }
    return w;
}

static inline LabAcc acc_zero(void) { return 0.0f; }
static inline LabAcc acc_add(LabAcc acc, LabLanes lanes, float scale) { return acc + (float)lanes * scale; }
static inline float acc_sum(LabAcc acc) { return acc; }
static inline float weight_scale_simd(const Tensor *w, int row, int block) { return weight_scale(w, row, block); }
#endif

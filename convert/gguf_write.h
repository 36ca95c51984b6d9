/*
convert/gguf_write.h — a Source written as a GGUF file that llama.cpp loads
(export --gguf-q4_0, --gguf-q8_0, --gguf-f32): its metadata, its tokenizer,
and Q4_0 blocks that are runq's own int4 weights re-packed, so both programs
run bit-identical weights.

What it is not: a reader (convert/gguf_read.h) or a general GGUF writer: it
writes the tensors and keys llama.cpp's "llama" architecture reads.

Include after: runq.c, convert/quantize.h, convert/source.h, convert/tokenizers.h, convert/write_checkpoint.h.
*/

#ifndef EDGE_CONVERT_GGUF_WRITE_H
#define EDGE_CONVERT_GGUF_WRITE_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// Writing GGUF: llama.cpp's format (version 3, architecture "llama"), so that
// llama.cpp runs the very weights runq runs. All fields little-endian:
//
//   "GGUF", u32 version 3, u64 n_tensors, u64 n_metadata
//   metadata       key (u64 length + UTF-8 bytes), u32 value type, value;
//                  an array is u32 element type, u64 count, the elements
//   tensor infos   name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64 offset
//                  into the data section; dims[0] is the fastest-varying one,
//                  so a (rows, cols) matrix is dims {cols, rows}
//   zero padding to general.alignment, then each tensor, padded to it too
//                  (llama.cpp checks that every offset is the padded running sum)
//
// Q4_0 is our Q4 at group size 32, block for block: {fp16 d; u8 qs[16]} with
// weight j in the low nibble of qs[j] and weight j+16 in the high one, and
// w = d * (q - 8). So its blocks are the scales and nibbles quantize_row_q4
// computes (or an int4 checkpoint holds), re-packed: no second quantizer.
// Tensor names are llama.cpp's; Wq and Wk rows are already in the interleaved-
// pair RoPE order its "llama" architecture rotates (llama2.c's and Meta's order).

#define GGUF_MAGIC "GGUF"
#define GGUF_MAGIC_U32 0x46554747u   // the same four bytes read as a little-endian u32
#define GGUF_VERSION 3
#define GGUF_ALIGNMENT 32

enum GgufValueType { GGUF_U32 = 4, GGUF_I32 = 5, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9 };
enum GgmlType { GGML_TYPE_F32 = 0, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8 };
// general.file_type: what most tensors are (llama_ftype)
enum { GGUF_FILE_ALL_F32 = 0, GGUF_FILE_MOSTLY_Q4_0 = 2, GGUF_FILE_MOSTLY_Q8_0 = 7 };
// tokenizer.ggml.token_type (llama_token_type)
enum { GGUF_TOKEN_NORMAL = 1, GGUF_TOKEN_UNKNOWN = 2, GGUF_TOKEN_CONTROL = 3, GGUF_TOKEN_BYTE = 6 };

typedef struct { uint16_t d; uint8_t qs[Q_BLOCK / 2]; } BlockQ4_0;   // ggml's block_q4_0
typedef struct { uint16_t d; int8_t qs[Q_BLOCK]; } BlockQ8_0;        // ggml's block_q8_0
_Static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");

static const char *ggml_type_name(uint32_t type) {
    return type == GGML_TYPE_F32 ? "f32" : type == GGML_TYPE_Q4_0 ? "q4_0" : type == GGML_TYPE_Q8_0 ? "q8_0" : "?";
}

static uint64_t ggml_nbytes(uint32_t type, uint64_t rows, uint64_t cols) {
    if (type == GGML_TYPE_Q4_0) return rows * (cols / Q_BLOCK) * sizeof(BlockQ4_0);
    if (type == GGML_TYPE_Q8_0) return rows * (cols / Q_BLOCK) * sizeof(BlockQ8_0);
    return rows * cols * sizeof(float);
}

typedef struct {
    Buffer bytes;
    uint64_t count;          // key-value pairs so far
} GgufMetadata;

static void gguf_put_string(Buffer *b, const char *s, size_t length) {
    uint64_t n = length;
    buffer_put(b, &n, 8);
    buffer_put(b, s, length);
}

static void gguf_key(GgufMetadata *m, const char *key, uint32_t type) {
    gguf_put_string(&m->bytes, key, strlen(key));
    buffer_put(&m->bytes, &type, 4);
    m->count++;
}

static void gguf_kv_u32(GgufMetadata *m, const char *key, uint32_t value) {
    gguf_key(m, key, GGUF_U32);
    buffer_put(&m->bytes, &value, 4);
}

static void gguf_kv_f32(GgufMetadata *m, const char *key, float value) {
    gguf_key(m, key, GGUF_F32);
    buffer_put(&m->bytes, &value, 4);
}

static void gguf_kv_bool(GgufMetadata *m, const char *key, int value) {
    uint8_t byte = value != 0;
    gguf_key(m, key, GGUF_BOOL);
    buffer_put(&m->bytes, &byte, 1);
}

static void gguf_kv_string(GgufMetadata *m, const char *key, const char *value) {
    gguf_key(m, key, GGUF_STRING);
    gguf_put_string(&m->bytes, value, strlen(value));
}

// the key and array header; the caller appends count elements of element_type
static void gguf_kv_array(GgufMetadata *m, const char *key, uint32_t element_type, uint64_t count) {
    gguf_key(m, key, GGUF_ARRAY);
    buffer_put(&m->bytes, &element_type, 4);
    buffer_put(&m->bytes, &count, 8);
}

// A tokenizer.bin piece as SentencePiece wrote it: tokenizer.bin stores the
// visible space "▁" (U+2581) as " ", and llama2.c's BOS/EOS as "\n<s>\n" and
// "\n</s>\n" so that they print on lines of their own.
static char *sentencepiece_piece(const char *piece, int is_bos_or_eos) {
    size_t length = strlen(piece);
    if (is_bos_or_eos && length >= 2 && piece[0] == '\n' && piece[length - 1] == '\n') { piece++; length -= 2; }
    char *out = xcalloc(length * 3 + 1, 1, "GGUF token");
    size_t n = 0;
    for (size_t i = 0; i < length; i++) {
        if (piece[i] == ' ') { memcpy(out + n, "\xE2\x96\x81", 3); n += 3; }
        else out[n++] = piece[i];
    }
    return out;
}

static int is_byte_piece(const char *piece) {
    return strlen(piece) == 6 && strncmp(piece, "<0x", 3) == 0 && isxdigit((unsigned char)piece[3])
        && isxdigit((unsigned char)piece[4]) && piece[5] == '>';
}

// A byte-level piece spelled in GPT-2's alphabet (out: room for 2 bytes per byte); returns its length.
static size_t byte_level_spell(const char *bytes, int n, const int byte_of[BYTE_LEVEL_ALPHABET], char *out) {
    size_t length = 0;
    for (int i = 0; i < n; i++) {
        unsigned cp = 0;
        while (byte_of[cp] != (unsigned char)bytes[i]) cp++;   // 324 entries: fine for a vocabulary once
        length += utf8_put(out + length, cp);
    }
    return length;
}

static int compare_ranks(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

// llama.cpp's names of the split rules (tokenizer.ggml.pre); the first of a
// rule is the one written. Qwen's tokenizer.json normalizes to NFC, which
// llama.cpp leaves out and runq does: the name stands for both.
static const struct { const char *name; uint32_t rule; } gguf_split_rules[] = {
    { "llama-bpe", SPLIT_LLAMA3 }, { "llama3", SPLIT_LLAMA3 }, { "llama-v3", SPLIT_LLAMA3 },
    { "gpt-2", SPLIT_GPT2 }, { "smollm", SPLIT_SMOLLM }, { "qwen2", SPLIT_QWEN | TOKENIZER_NFC }, { "gpt-4o", SPLIT_O200K },
};

static uint32_t gguf_split_rule(const char *name) {
    for (size_t i = 0; i < sizeof gguf_split_rules / sizeof gguf_split_rules[0]; i++)
        if (strcmp(gguf_split_rules[i].name, name) == 0) return gguf_split_rules[i].rule;
    return 0;
}

static const char *gguf_split_rule_name(uint32_t rule) {
    for (size_t i = 0; i < sizeof gguf_split_rules / sizeof gguf_split_rules[0]; i++)
        if (gguf_split_rules[i].rule == rule) return gguf_split_rules[i].name;
    die("no GGUF name for byte-level split rule %d", rule);
    return NULL;
}

// tokenizer.ggml.* for a byte-level tokenizer: llama.cpp's "gpt2" model with
// its pre-tokenizer ("llama-bpe", "gpt-2", "smollm", "qwen2", "gpt-4o"): the pieces spelled in GPT-2's
// alphabet (special tokens as they are, typed control) and the merges the
// ranks imply, listed as Hugging Face's converter of tiktoken's ranks lists
// them: each piece in rank order, its splits into two pieces by their ranks.
static void gguf_put_byte_level_tokenizer(GgufMetadata *m, const Source *src, const Tokenizer *tok) {
    const FileHeader *h = &src->header;
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    char *spelled = xcalloc(2 * (size_t)tok->max_token_length + 1, 1, "GGUF token");
    gguf_kv_string(m, "tokenizer.ggml.model", "gpt2");
    gguf_kv_string(m, "tokenizer.ggml.pre", gguf_split_rule_name((uint32_t)tok->split_rule | (tok->normalize_nfc ? TOKENIZER_NFC : 0)));
    gguf_kv_array(m, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)h->vocab_size);
    for (int id = 0; id < h->vocab_size; id++) {
        int special = tok->scores[id] == -INFINITY;
        size_t length = special ? (size_t)tok->lengths[id] : byte_level_spell(tok->vocab[id], tok->lengths[id], byte_of, spelled);
        gguf_put_string(&m->bytes, special ? tok->vocab[id] : spelled, length);
    }
    gguf_kv_array(m, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)h->vocab_size);
    for (int id = 0; id < h->vocab_size; id++) {
        int32_t type = tok->scores[id] == -INFINITY ? GGUF_TOKEN_CONTROL : GGUF_TOKEN_NORMAL;
        buffer_put(&m->bytes, &type, 4);
    }
    // the merges: the blob's list (Qwen's) as it is, else the ranks': a piece's
    // rank is -score, which for Llama 3 is its id, so ids in order are ranks in order
    Buffer merges = { 0 };
    uint64_t n_merges = 0;
    int *splits = xcalloc((size_t)tok->max_token_length, 2 * sizeof(int), "merges");
    char *merge = xcalloc(4 * (size_t)tok->max_token_length + 2, 1, "merge");
    for (int rank = 0; rank < tok->n_merges; rank++, n_merges++) {
        int a = tok->merges[2 * rank], b = tok->merges[2 * rank + 1];
        size_t length = byte_level_spell(tok->vocab[a], tok->lengths[a], byte_of, merge);
        merge[length++] = ' ';
        length += byte_level_spell(tok->vocab[b], tok->lengths[b], byte_of, merge + length);
        gguf_put_string(&merges, merge, length);
    }
    for (int id = 0; id < h->vocab_size && !tok->n_merges; id++) {
        if (tok->scores[id] == -INFINITY) continue;
        if (tok->scores[id] != -(float)id) die("a byte-level tokenizer's pieces score minus their ids; piece %d does not", id);
        int n = 0;
        for (int k = 1; k < tok->lengths[id]; k++) {
            int a = piece_lookup(tok, tok->vocab[id], (size_t)k);
            int b = piece_lookup(tok, tok->vocab[id] + k, (size_t)(tok->lengths[id] - k));
            if (a < 0 || b < 0 || tok->scores[a] == -INFINITY || tok->scores[b] == -INFINITY) continue;
            splits[2 * n] = a;
            splits[2 * n + 1] = b;
            n++;
        }
        qsort(splits, (size_t)n, 2 * sizeof(int), compare_ranks);   // by the left part's rank; parts of one piece never tie
        for (int i = 0; i < n; i++) {
            int a = splits[2 * i], b = splits[2 * i + 1];
            size_t length = byte_level_spell(tok->vocab[a], tok->lengths[a], byte_of, merge);
            merge[length++] = ' ';
            length += byte_level_spell(tok->vocab[b], tok->lengths[b], byte_of, merge + length);
            gguf_put_string(&merges, merge, length);
            n_merges++;
        }
    }
    gguf_kv_array(m, "tokenizer.ggml.merges", GGUF_STRING, n_merges);
    buffer_put(&m->bytes, merges.data, merges.size);
    gguf_kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)h->bos_id);
    gguf_kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)h->eos_id);
    gguf_kv_bool(m, "tokenizer.ggml.add_bos_token", tok->add_bos);   // as runq starts a prompt
    gguf_kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
    free(merges.data);
    free(splits);
    free(merge);
    free(spelled);
}

// tokenizer.ggml.*: the embedded tokenizer as llama.cpp's "llama"
// (SentencePiece) vocabulary: pieces, merge scores and token types.
static void gguf_put_tokenizer(GgufMetadata *m, const Source *src, const char *output) {
    const FileHeader *h = &src->header;
    if (!src->tokenizer)
        die("%s: a GGUF file carries its tokenizer, and the input has none: pass one with -z tokenizer.bin", output);
    Tokenizer tok;
    const char *error = build_tokenizer_from_memory(&tok, src->tokenizer, src->tokenizer_size, h->vocab_size);
    if (error) die("%s: the embedded tokenizer for a %d-piece vocabulary: %s", output, h->vocab_size, error);
    if (tok.kind == TOKENIZER_BYTE_LEVEL) {
        gguf_put_byte_level_tokenizer(m, src, &tok);
        free_tokenizer(&tok);
        return;
    }
    int unk_id = str_lookup("<unk>", &tok);

    gguf_kv_string(m, "tokenizer.ggml.model", "llama");
    gguf_kv_array(m, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)h->vocab_size);
    for (int i = 0; i < h->vocab_size; i++) {
        char *piece = sentencepiece_piece(tok.vocab[i], i == h->bos_id || i == h->eos_id);
        gguf_put_string(&m->bytes, piece, strlen(piece));
        free(piece);
    }
    gguf_kv_array(m, "tokenizer.ggml.scores", GGUF_F32, (uint64_t)h->vocab_size);
    buffer_put(&m->bytes, tok.scores, sizeof(float) * (size_t)h->vocab_size);
    gguf_kv_array(m, "tokenizer.ggml.token_type", GGUF_I32, (uint64_t)h->vocab_size);
    for (int i = 0; i < h->vocab_size; i++) {
        int32_t type = i == h->bos_id || i == h->eos_id ? GGUF_TOKEN_CONTROL
                     : i == unk_id ? GGUF_TOKEN_UNKNOWN
                     : is_byte_piece(tok.vocab[i]) ? GGUF_TOKEN_BYTE : GGUF_TOKEN_NORMAL;
        buffer_put(&m->bytes, &type, 4);
    }
    gguf_kv_u32(m, "tokenizer.ggml.bos_token_id", (uint32_t)h->bos_id);
    gguf_kv_u32(m, "tokenizer.ggml.eos_token_id", (uint32_t)h->eos_id);
    if (unk_id >= 0) gguf_kv_u32(m, "tokenizer.ggml.unknown_token_id", (uint32_t)unk_id);
    gguf_kv_bool(m, "tokenizer.ggml.add_bos_token", tok.add_bos);   // as runq starts a prompt
    gguf_kv_bool(m, "tokenizer.ggml.add_space_prefix", tok.dummy_prefix);
    gguf_kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
    free_tokenizer(&tok);
}

// ---- What llama.cpp's architectures compute, and the model's keys.
// Each family is written as the architecture llama.cpp names it (runq.c's
// architecture_names), with the keys its loader reads. A model llama.cpp
// would compute otherwise than runq is refused, naming what differs.

// "<architecture>.<suffix>"
static const char *arch_key(char out[96], const Source *src, const char *suffix) {
    snprintf(out, 96, "%s.%s", architecture_names[src->settings.architecture], suffix);
    return out;
}

static int is_gemma_architecture(uint32_t architecture) { return architecture == ARCH_GEMMA2 || architecture == ARCH_GEMMA3; }

// llama.cpp turns q and k of these with NEOX RoPE (rotate-half), on rows in
// Hugging Face's order; llama and smollm3 with interleaved pairs, runq's order.
static int neox_architecture(uint32_t architecture) { return architecture != ARCH_LLAMA && architecture != ARCH_SMOLLM3; }

static int any_layer(const Source *src, uint32_t bits) {
    for (int l = 0; l < src->header.n_layers; l++) if (source_layer_kind(src, l) & bits) return 1;
    return 0;
}

// Are rope_freqs' divisors one factor (linear scaling)? Returns it, or 0.
static float uniform_divisor(const Source *src) {
    int half = source_rotary_dim(src) / 2;
    for (int i = 1; i < half; i++) if (src->rope_freqs[i] != src->rope_freqs[0]) return 0;
    return src->rope_freqs[0];
}

static void refuse_for_gguf(const Source *src, const char *output, const char *what) {
    die("%s: llama.cpp's %s architecture does not compute %s, which this model has: no GGUF of it is written", output,
        architecture_names[src->settings.architecture], what);
}

// Every setting of the model must be one llama.cpp's architecture computes.
static void check_gguf_architecture(const Source *src, const char *output) {
    const FileHeader *h = &src->header;
    const ModelSettings *s = &src->settings;
    uint32_t a = s->architecture;
    int gemma = is_gemma_architecture(a);
    if ((s->activation == ACTIVATION_GELU_TANH) != gemma) refuse_for_gguf(src, output, gemma ? "SwiGLU" : "GeGLU");
    if ((h->flags & FLAG_QKV_BIAS) && a != ARCH_QWEN2) refuse_for_gguf(src, output, "q/k/v biases");
    if ((h->flags & FLAG_QK_NORM) && a != ARCH_QWEN3 && a != ARCH_GEMMA3) refuse_for_gguf(src, output, "q/k norms");
    if ((h->flags & FLAG_POST_NORMS) != (gemma ? FLAG_POST_NORMS : 0)) refuse_for_gguf(src, output, "its norms");
    if (s->embedding_scale && !gemma) refuse_for_gguf(src, output, "scaled embeddings");
    if (s->score_divisor && s->score_divisor != sqrtf((float)h->head_dim))   // llama.cpp's gemma scale is 1/sqrt(head_dim) too
        refuse_for_gguf(src, output, "attention scores over sqrt(query_pre_attn_scalar) other than sqrt(head_dim)");
    if (s->attention_softcap && a != ARCH_GEMMA2) refuse_for_gguf(src, output, "soft-capped attention scores");
    if (s->final_softcap && !gemma) refuse_for_gguf(src, output, "soft-capped logits");
    if (any_layer(src, LAYER_SLIDING) && (a == ARCH_QWEN2 || a == ARCH_QWEN3 || a == ARCH_SMOLLM3))
        refuse_for_gguf(src, output, "sliding-window layers");
    if (s->rotary_dim && a != ARCH_PHI3) refuse_for_gguf(src, output, "RoPE over part of each head");
    if (any_layer(src, LAYER_LOCAL_ROPE) && a != ARCH_GEMMA3) refuse_for_gguf(src, output, "a local RoPE base");
    for (int l = 0; l < h->n_layers; l++)   // llama.cpp's smollm3 leaves RoPE out of every fourth layer, always
        if (((source_layer_kind(src, l) & LAYER_NO_ROPE) != 0) != (a == ARCH_SMOLLM3 && (l + 1) % 4 == 0))
            refuse_for_gguf(src, output, a == ARCH_SMOLLM3 ? "NoPE layers other than every fourth" : "layers without RoPE");
    if (src->rope_freqs_long && a != ARCH_PHI3) refuse_for_gguf(src, output, "LongRoPE");
    if (a == ARCH_PHI3 && src->rope_freqs && !src->rope_freqs_long) refuse_for_gguf(src, output, "one set of RoPE factors");
    if (src->rope_freqs && a != ARCH_LLAMA && a != ARCH_PHI3 && !(a == ARCH_GEMMA3 && uniform_divisor(src)))
        refuse_for_gguf(src, output, "these RoPE frequency divisors");
    if (gemma && !(h->flags & FLAG_TIED_CLASSIFIER)) refuse_for_gguf(src, output, "a classifier apart from the embeddings");
    if ((a == ARCH_QWEN2 || a == ARCH_PHI3) && h->n_heads * h->head_dim != h->dim)   // their q is (dim, dim) there
        refuse_for_gguf(src, output, "queries of another width than the hidden size (heads * head_dim != dim)");
}

// The sliding layers as llama.cpp reads them: one flag per layer.
static void gguf_put_sliding_layers(GgufMetadata *m, const Source *src) {
    char key[96];
    gguf_kv_u32(m, arch_key(key, src, "attention.sliding_window"), (uint32_t)src->settings.sliding_window);
    gguf_kv_array(m, arch_key(key, src, "attention.sliding_window_pattern"), GGUF_U32, (uint64_t)src->header.n_layers);
    for (int l = 0; l < src->header.n_layers; l++) {
        uint32_t slides = (source_layer_kind(src, l) & LAYER_SLIDING) != 0;
        buffer_put(&m->bytes, &slides, 4);
    }
}

// The keys of what sets each architecture apart (llama's and the Qwens' have none).
static void gguf_put_architecture_keys(GgufMetadata *m, const Source *src, const char *output) {
    const ModelSettings *s = &src->settings;
    char key[96];
    if (is_gemma_architecture(s->architecture)) {
        // llama.cpp multiplies by sqrtf(dim); Hugging Face's Gemma by sqrt(dim) in the model's dtype, which
        // export keeps: written for export's reader (llama.cpp's gemma ignores the key)
        gguf_kv_f32(m, arch_key(key, src, "embedding_scale"), s->embedding_scale);
        if (s->attention_softcap) gguf_kv_f32(m, arch_key(key, src, "attn_logit_softcapping"), s->attention_softcap);
        if (s->final_softcap) gguf_kv_f32(m, arch_key(key, src, "final_logit_softcapping"), s->final_softcap);
        if (s->sliding_window) gguf_put_sliding_layers(m, src);
        if (s->rope_theta_local) gguf_kv_f32(m, arch_key(key, src, "rope.freq_base_swa"), s->rope_theta_local);
        if (src->rope_freqs) {   // linear scaling of the global layers (check_gguf_architecture: one divisor)
            gguf_kv_string(m, arch_key(key, src, "rope.scaling.type"), "linear");
            gguf_kv_f32(m, arch_key(key, src, "rope.scaling.factor"), uniform_divisor(src));
        }
    } else if (s->architecture == ARCH_PHI3) {
        // llama.cpp reads the window and then ignores it (it warns at load); export's reader keeps it
        gguf_kv_u32(m, arch_key(key, src, "attention.sliding_window"), (uint32_t)s->sliding_window);
        if (src->rope_freqs_long) {
            gguf_kv_f32(m, arch_key(key, src, "rope.scaling.attn_factor"), s->rope_attention_factor ? s->rope_attention_factor : 1.0f);
            gguf_kv_u32(m, arch_key(key, src, "rope.scaling.original_context_length"), (uint32_t)s->rope_long_after);
        }
    } else if (s->architecture == ARCH_LLAMA && s->sliding_window) {
        // llama.cpp's llama attends to every position: up to the window that is exact (Mistral 7B v0.1)
        fprintf(stderr, "%s: llama.cpp's llama architecture has no sliding window: the GGUF's context is capped at "
                "the window's %d positions, where full attention is exact\n", output, s->sliding_window);
    }
}

static void gguf_put_hyperparameters(GgufMetadata *m, const Source *src, uint32_t ggml_type, const char *model_name,
                                     const char *output) {
    const FileHeader *h = &src->header;
    char key[96];
    check_gguf_architecture(src, output);
    uint32_t file_type = ggml_type == GGML_TYPE_Q4_0 ? GGUF_FILE_MOSTLY_Q4_0
                       : ggml_type == GGML_TYPE_Q8_0 ? GGUF_FILE_MOSTLY_Q8_0 : GGUF_FILE_ALL_F32;
    int capped = src->settings.architecture == ARCH_LLAMA && src->settings.sliding_window;
    gguf_kv_string(m, "general.architecture", architecture_names[src->settings.architecture]);
    gguf_kv_string(m, "general.name", model_name);
    gguf_kv_u32(m, "general.alignment", GGUF_ALIGNMENT);
    gguf_kv_u32(m, "general.file_type", file_type);
    gguf_kv_u32(m, "general.quantization_version", 2);   // ggml's current Q4_0/Q8_0 block layout
    gguf_kv_u32(m, arch_key(key, src, "vocab_size"), (uint32_t)h->vocab_size);
    gguf_kv_u32(m, arch_key(key, src, "context_length"), (uint32_t)(capped ? src->settings.sliding_window : h->seq_len));
    gguf_kv_u32(m, arch_key(key, src, "embedding_length"), (uint32_t)h->dim);
    gguf_kv_u32(m, arch_key(key, src, "block_count"), (uint32_t)h->n_layers);
    int uniform_ffn = 1;
    for (int l = 1; l < h->n_layers; l++) uniform_ffn &= src->ffn_dim[l] == src->ffn_dim[0];
    if (uniform_ffn) {
        gguf_kv_u32(m, arch_key(key, src, "feed_forward_length"), (uint32_t)src->ffn_dim[0]);
    } else {   // structurally pruned: llama.cpp reads one width per layer from an array
        gguf_kv_array(m, arch_key(key, src, "feed_forward_length"), GGUF_U32, (uint64_t)h->n_layers);
        for (int l = 0; l < h->n_layers; l++) buffer_put(&m->bytes, &src->ffn_dim[l], 4);
    }
    gguf_kv_u32(m, arch_key(key, src, "attention.head_count"), (uint32_t)h->n_heads);
    gguf_kv_u32(m, arch_key(key, src, "attention.head_count_kv"), (uint32_t)h->n_kv_heads);
    // llama.cpp assumes head width dim/heads unless told otherwise
    gguf_kv_u32(m, arch_key(key, src, "attention.key_length"), (uint32_t)h->head_dim);
    gguf_kv_u32(m, arch_key(key, src, "attention.value_length"), (uint32_t)h->head_dim);
    gguf_kv_u32(m, arch_key(key, src, "rope.dimension_count"), (uint32_t)source_rotary_dim(src));
    gguf_kv_f32(m, arch_key(key, src, "rope.freq_base"), h->rope_theta);
    gguf_kv_f32(m, arch_key(key, src, "attention.layer_norm_rms_epsilon"), h->norm_eps);
    gguf_put_architecture_keys(m, src, output);
}

// ---- The tensors: each planned tensor under llama.cpp's name, except that
// Phi-3's gate and up rows travel as one ffn_up (gate rows first: llama.cpp's
// SwiGLU splits it so), its RoPE divisors as rope_factors_short and _long,
// and Gemma 3's linear scaling as keys, not a tensor.

typedef struct {
    const PlannedTensor *parts[2];  // what to read from the source: one tensor, or ffn_up's gate then up
    int n_parts;
    char name[TENSOR_NAME_LEN];     // llama.cpp's name
    uint32_t type;                  // GgmlType
    uint64_t rows, cols;
    int neox;                       // q/k rows, or their biases' and norms' elements, in rotate-half order
    uint64_t offset;                // from the start of the file
    uint64_t nbytes;
} GgufTensor;

// Our tensor -> llama.cpp's name for it in the model's architecture.
static void gguf_tensor_name(const Source *src, const PlannedTensor *t, char *out, size_t size) {
    static const char *layer_names[N_TENSOR_KINDS] = {
        [K_ATTN_NORM] = "attn_norm", [K_WQ] = "attn_q", [K_WK] = "attn_k", [K_WV] = "attn_v",
        [K_WO] = "attn_output", [K_FFN_NORM] = "ffn_norm", [K_W1] = "ffn_gate", [K_W2] = "ffn_down",
        [K_W3] = "ffn_up", [K_BQ] = "attn_q", [K_BK] = "attn_k", [K_BV] = "attn_v", [K_Q_NORM] = "attn_q_norm",
        [K_K_NORM] = "attn_k_norm", [K_POST_ATTN_NORM] = "post_attention_norm", [K_POST_FFN_NORM] = "post_ffw_norm",
    };
    int phi3 = src->settings.architecture == ARCH_PHI3;
    int bias = t->kind == K_BQ || t->kind == K_BK || t->kind == K_BV;
    if (t->kind == K_EMBED) snprintf(out, size, "token_embd.weight");
    else if (t->kind == K_NORM) snprintf(out, size, "output_norm.weight");
    else if (t->kind == K_OUTPUT) snprintf(out, size, "output.weight");
    else if (t->kind == K_ROPE_FREQS) snprintf(out, size, phi3 ? "rope_factors_short.weight" : "rope_freqs.weight");
    else if (t->kind == K_ROPE_FREQS_LONG) snprintf(out, size, "rope_factors_long.weight");
    else if (phi3 && t->kind == K_W1) snprintf(out, size, "blk.%d.ffn_up.weight", t->layer);   // with K_W3's rows
    else snprintf(out, size, "blk.%d.%s.%s", t->layer, layer_names[t->kind], bias ? "bias" : "weight");
}

// Every matrix in ggml_type, the embedding and classifier included (llama.cpp's
// own quantizer keeps output.weight at Q6_K in a "Q4_0" file; here both
// programs run the same weights); vectors stay f32. Refuses shapes a block
// type cannot hold. Returns the count; data offsets are filled in later.
static int gguf_plan_tensors(const Source *src, const Plan *plan, uint32_t ggml_type, GgufTensor *out, const char *what) {
    int count = 0, phi3 = src->settings.architecture == ARCH_PHI3;
    for (int i = 0; i < plan->count; i++) {
        const PlannedTensor *t = &plan->tensors[i];
        if (t->kind == K_TOKENIZER) continue;   // the tokenizer travels as metadata
        if (t->kind == K_ROPE_FREQS && is_gemma_architecture(src->settings.architecture)) continue;   // keys
        if (phi3 && t->kind == K_W3) {   // joins its layer's K_W1, planned before it
            GgufTensor *up = &out[count - 1];
            while (up->parts[0]->kind != K_W1 || up->parts[0]->layer != t->layer) up--;
            up->parts[up->n_parts++] = t;
            up->rows += t->entry.rows;
            up->nbytes = ggml_nbytes(up->type, up->rows, t->entry.cols);
            continue;
        }
        GgufTensor *g = &out[count++];
        g->parts[0] = t;
        g->n_parts = 1;
        g->rows = t->entry.rows;
        g->cols = t->entry.cols;
        g->type = is_vector_kind(t->kind) ? GGML_TYPE_F32 : ggml_type;
        g->neox = neox_architecture(src->settings.architecture) && (permuted_rows(t->kind) || permuted_columns(t->kind));
        gguf_tensor_name(src, t, g->name, sizeof g->name);
        if (g->type != GGML_TYPE_F32 && t->entry.cols % Q_BLOCK != 0)
            die("%s: tensor %s (our %s) has %u columns, but GGUF %s stores whole blocks of %d weights along a "
                "row, so it needs a multiple of %d; use --gguf-f32 for this model",
                what, g->name, t->entry.name, t->entry.cols, ggml_type_name(ggml_type), Q_BLOCK, Q_BLOCK);
        g->nbytes = ggml_nbytes(g->type, g->rows, g->cols);
    }
    return count;
}

static void gguf_put_tensor_info(Buffer *b, const GgufTensor *g, uint64_t data_offset) {
    int is_vector = is_vector_kind(g->parts[0]->kind);
    uint32_t n_dims = is_vector ? 1 : 2;
    uint64_t dims[2] = { g->cols, g->rows };
    gguf_put_string(b, g->name, strlen(g->name));
    buffer_put(b, &n_dims, 4);
    buffer_put(b, dims, 8 * n_dims);
    buffer_put(b, &g->type, 4);
    buffer_put(b, &data_offset, 8);
}

// x (n,), n a multiple of 32 -> Q8_0 blocks, scale max|x|/127 as ggml's
// quantize_row_q8_0 chooses it; values are rounded against the fp16 scale
// actually stored.
static void quantize_row_q8_0(const float *x, int n, BlockQ8_0 *out) {
    for (int block = 0; block < n / Q_BLOCK; block++) {
        const float *v = x + block * Q_BLOCK;
        float amax = 0.0f;
        for (int j = 0; j < Q_BLOCK; j++) amax = fmaxf(amax, fabsf(v[j]));
        out[block].d = fp32_to_fp16(amax / 127.0f);
        float scale = fp16_to_fp32(out[block].d), inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
        for (int j = 0; j < Q_BLOCK; j++) {
            long q = lrintf(v[j] * inverse);
            out[block].qs[j] = (int8_t)(q < -127 ? -127 : q > 127 ? 127 : q);
        }
    }
}

// One row of our Q4 at group size 32 (n_bytes = cols/2 nibble bytes, cols/32
// scales) -> cols/32 Q4_0 blocks: the same bytes in a different order.
static void pack_row_q4_0(const uint8_t *nibbles, const uint16_t *scales, int cols, BlockQ4_0 *out) {
    for (int block = 0; block < cols / Q_BLOCK; block++) {
        out[block].d = scales[block];
        memcpy(out[block].qs, nibbles + block * (Q_BLOCK / 2), Q_BLOCK / 2);
    }
}

// One part's rows [begin, end) (a chunk of whole heads when g->neox) into out
// as g's rows: read (or Q4 copied), put into rotate-half order when g->neox
// (row g of the GGUF is our row interleaved_index(g); a vector's elements so),
// converted to g's type.
static void gguf_chunk(Source *src, const GgufTensor *g, const PlannedTensor *t, int begin, int end, float *values,
                       uint8_t *nibbles, uint16_t *scales, uint8_t *out) {
    int cols = (int)t->entry.cols, head_dim = src->header.head_dim, rotary_dim = source_rotary_dim(src);
    size_t row_bytes = (size_t)(g->nbytes / g->rows);
    if (g->type == GGML_TYPE_Q4_0) read_coded_rows(src, t, TYPE_Q4, Q_BLOCK, begin, end, values, nibbles, scales);
    else read_finite_rows(src, t, begin, end, values);
    for (int r = begin; r < end; r++) {
        int from = (int)(g->neox && permuted_rows(t->kind) ? interleaved_index(r, head_dim, rotary_dim) : r) - begin;
        uint8_t *row = out + (size_t)(r - begin) * row_bytes;
        if (g->type == GGML_TYPE_Q4_0) {
            pack_row_q4_0(nibbles + (size_t)from * cols / 2, scales + (size_t)from * cols / Q_BLOCK, cols, (BlockQ4_0 *)row);
        } else if (g->type == GGML_TYPE_Q8_0) {
            quantize_row_q8_0(values + (size_t)from * cols, cols, (BlockQ8_0 *)row);
        } else if (g->neox && permuted_columns(t->kind)) {
            for (int c = 0; c < cols; c++)
                memcpy(row + 4 * (size_t)c, values + (size_t)from * cols + interleaved_index(c, head_dim, rotary_dim), 4);
        } else {
            memcpy(row, values + (size_t)from * cols, row_bytes);
        }
    }
}

// Rows in chunks of about 4 MB of floats (whole heads when reordered), part
// after part: read (or copy Q4), reorder, convert, write.
static void write_gguf_tensor(int fd, const char *path, Source *src, const GgufTensor *g, Progress *progress) {
    int cols = (int)g->cols;
    int chunk = (int)(((size_t)1 << 20) / (size_t)cols);
    if (g->neox) chunk = chunk / src->header.head_dim * src->header.head_dim;   // RoPE's order moves rows within a head
    if (chunk < (g->neox ? src->header.head_dim : 1)) chunk = g->neox ? src->header.head_dim : 1;
    size_t row_bytes = (size_t)(g->nbytes / g->rows);
    float *values = xcalloc((size_t)chunk * cols, sizeof(float), "export buffer");
    uint8_t *nibbles = xcalloc((size_t)chunk * cols / 2 + 1, 1, "export buffer");
    uint16_t *scales = xcalloc((size_t)chunk * cols / Q_BLOCK + 1, sizeof(uint16_t), "export buffer");
    uint8_t *out = xcalloc((size_t)chunk * row_bytes, 1, "export buffer");
    uint64_t first_row = 0;   // of this part, in the GGUF tensor
    for (int part = 0; part < g->n_parts; part++) {
        const PlannedTensor *t = g->parts[part];
        int rows = (int)t->entry.rows;
        for (int begin = 0; begin < rows; begin += chunk) {
            int end = begin + chunk < rows ? begin + chunk : rows, n = end - begin;
            gguf_chunk(src, g, t, begin, end, values, nibbles, scales, out);
            write_at(fd, out, (size_t)n * row_bytes, g->offset + (first_row + (uint64_t)begin) * row_bytes, path);
            progress_advance(progress, g->nbytes * (uint64_t)n / g->rows, g->name);
        }
        first_row += (uint64_t)rows;
    }
    free(values);
    free(nibbles);
    free(scales);
    free(out);
}

// ggml_type: GGML_TYPE_Q4_0, GGML_TYPE_Q8_0 or GGML_TYPE_F32 for every matrix.
static void write_gguf(Source *src, const char *output, uint32_t ggml_type, const char *model_name, int quiet) {
    refuse_to_overwrite_inputs(src, output);
    Plan plan = make_plan(src, TYPE_F32, 0);   // names, kinds and shapes; GGUF has its own layout
    check_source_tensors(src, &plan);
    GgufTensor *tensors = xcalloc((size_t)plan.count, sizeof(GgufTensor), "GGUF tensor table");
    int count = gguf_plan_tensors(src, &plan, ggml_type, tensors, output);

    GgufMetadata metadata = { 0 };
    gguf_put_hyperparameters(&metadata, src, ggml_type, model_name, output);
    gguf_put_tokenizer(&metadata, src, output);
    Buffer infos = { 0 };
    uint64_t data_size = 0;
    for (int i = 0; i < count; i++) {
        gguf_put_tensor_info(&infos, &tensors[i], data_size);
        data_size += round_up(tensors[i].nbytes, GGUF_ALIGNMENT);
    }
    uint64_t header_size = 4 + 4 + 8 + 8, n_tensors = (uint64_t)count;
    uint64_t data_start = round_up(header_size + metadata.bytes.size + infos.size, GGUF_ALIGNMENT);
    uint64_t offset = data_start;
    for (int i = 0; i < count; i++) {
        tensors[i].offset = offset;
        offset += round_up(tensors[i].nbytes, GGUF_ALIGNMENT);
    }

    int fd = create_pending_output(output);
    uint32_t version = GGUF_VERSION;
    write_at(fd, GGUF_MAGIC, 4, 0, output);
    write_at(fd, &version, 4, 4, output);
    write_at(fd, &n_tensors, 8, 8, output);
    write_at(fd, &metadata.count, 8, 16, output);
    write_at(fd, metadata.bytes.data, metadata.bytes.size, header_size, output);
    write_at(fd, infos.data, infos.size, header_size + metadata.bytes.size, output);
    Progress progress = { .total = data_start + data_size, .last_percent = -100,
                          .quiet = quiet || data_size < (64u << 20), .terminal = isatty(STDERR_FILENO) };
    progress_advance(&progress, data_start, "metadata");
    for (int i = 0; i < count; i++) write_gguf_tensor(fd, output, src, &tensors[i], &progress);
    progress_finish(&progress);
    commit_pending_output(fd, output, data_start + data_size);   // the last tensor's padding is zeros too
    free(metadata.bytes.data);
    free(infos.data);
    free(tensors);
    free(plan.tensors);
}

#pragma GCC diagnostic pop
#endif

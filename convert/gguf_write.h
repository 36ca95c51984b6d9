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
    { "gpt-2", SPLIT_GPT2 }, { "smollm", SPLIT_SMOLLM }, { "qwen2", SPLIT_QWEN | TOKENIZER_NFC },
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
// its pre-tokenizer ("llama-bpe", "gpt-2", "smollm", "qwen2"): the pieces spelled in GPT-2's
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

static void gguf_put_hyperparameters(GgufMetadata *m, const Source *src, uint32_t ggml_type, const char *model_name) {
    const FileHeader *h = &src->header;
    uint32_t file_type = ggml_type == GGML_TYPE_Q4_0 ? GGUF_FILE_MOSTLY_Q4_0
                       : ggml_type == GGML_TYPE_Q8_0 ? GGUF_FILE_MOSTLY_Q8_0 : GGUF_FILE_ALL_F32;
    gguf_kv_string(m, "general.architecture", "llama");
    gguf_kv_string(m, "general.name", model_name);
    gguf_kv_u32(m, "general.alignment", GGUF_ALIGNMENT);
    gguf_kv_u32(m, "general.file_type", file_type);
    gguf_kv_u32(m, "general.quantization_version", 2);   // ggml's current Q4_0/Q8_0 block layout
    gguf_kv_u32(m, "llama.vocab_size", (uint32_t)h->vocab_size);
    gguf_kv_u32(m, "llama.context_length", (uint32_t)h->seq_len);
    gguf_kv_u32(m, "llama.embedding_length", (uint32_t)h->dim);
    gguf_kv_u32(m, "llama.block_count", (uint32_t)h->n_layers);
    int uniform_ffn = 1;
    for (int l = 1; l < h->n_layers; l++) uniform_ffn &= src->ffn_dim[l] == src->ffn_dim[0];
    if (uniform_ffn) {
        gguf_kv_u32(m, "llama.feed_forward_length", (uint32_t)src->ffn_dim[0]);
    } else {   // structurally pruned: llama.cpp reads one width per layer from an array
        gguf_kv_array(m, "llama.feed_forward_length", GGUF_U32, (uint64_t)h->n_layers);
        for (int l = 0; l < h->n_layers; l++) buffer_put(&m->bytes, &src->ffn_dim[l], 4);
    }
    gguf_kv_u32(m, "llama.attention.head_count", (uint32_t)h->n_heads);
    gguf_kv_u32(m, "llama.attention.head_count_kv", (uint32_t)h->n_kv_heads);
    // llama.cpp assumes head width dim/heads unless told otherwise
    gguf_kv_u32(m, "llama.attention.key_length", (uint32_t)h->head_dim);
    gguf_kv_u32(m, "llama.attention.value_length", (uint32_t)h->head_dim);
    gguf_kv_u32(m, "llama.rope.dimension_count", (uint32_t)h->head_dim);
    gguf_kv_f32(m, "llama.rope.freq_base", h->rope_theta);
    gguf_kv_f32(m, "llama.attention.layer_norm_rms_epsilon", h->norm_eps);
}

typedef struct {
    const PlannedTensor *planned;   // what to read from the source
    char name[TENSOR_NAME_LEN];     // llama.cpp's name
    uint32_t type;                  // GgmlType
    uint64_t offset;                // from the start of the file
    uint64_t nbytes;
} GgufTensor;

// Our tensor -> llama.cpp's name for it
static void gguf_tensor_name(const PlannedTensor *t, char *out, size_t size) {
    static const char *layer_names[] = {
        [K_ATTN_NORM] = "attn_norm", [K_WQ] = "attn_q", [K_WK] = "attn_k", [K_WV] = "attn_v",
        [K_WO] = "attn_output", [K_FFN_NORM] = "ffn_norm", [K_W1] = "ffn_gate", [K_W2] = "ffn_down",
        [K_W3] = "ffn_up",
    };
    if (t->kind == K_EMBED) snprintf(out, size, "token_embd.weight");
    else if (t->kind == K_NORM) snprintf(out, size, "output_norm.weight");
    else if (t->kind == K_OUTPUT) snprintf(out, size, "output.weight");
    else if (t->kind == K_ROPE_FREQS) snprintf(out, size, "rope_freqs.weight");
    else snprintf(out, size, "blk.%d.%s.weight", t->layer, layer_names[t->kind]);
}

static int is_norm_kind(int kind) { return kind == K_ATTN_NORM || kind == K_FFN_NORM || kind == K_NORM; }

// GGUF stores these as 1-D f32 tensors, whatever type the matrices have
static int is_vector_kind(int kind) { return is_norm_kind(kind) || kind == K_ROPE_FREQS; }

// Every matrix in ggml_type, the embedding and classifier included (llama.cpp's
// own quantizer keeps output.weight at Q6_K in a "Q4_0" file; here both
// programs run the same weights); norms stay f32. Refuses shapes a block type
// cannot hold. Returns the count; data offsets are filled in later.
static int gguf_plan_tensors(const Plan *plan, uint32_t ggml_type, GgufTensor *out, const char *what) {
    int count = 0;
    for (int i = 0; i < plan->count; i++) {
        const PlannedTensor *t = &plan->tensors[i];
        if (t->kind == K_TOKENIZER) continue;   // the tokenizer travels as metadata
        GgufTensor *g = &out[count++];
        g->planned = t;
        g->type = is_vector_kind(t->kind) ? GGML_TYPE_F32 : ggml_type;
        gguf_tensor_name(t, g->name, sizeof g->name);
        if (g->type != GGML_TYPE_F32 && t->entry.cols % Q_BLOCK != 0)
            die("%s: tensor %s (our %s) has %u columns, but GGUF %s stores whole blocks of %d weights along a "
                "row, so it needs a multiple of %d; use --gguf-f32 for this model",
                what, g->name, t->entry.name, t->entry.cols, ggml_type_name(ggml_type), Q_BLOCK, Q_BLOCK);
        g->nbytes = ggml_nbytes(g->type, t->entry.rows, t->entry.cols);
    }
    return count;
}

static void gguf_put_tensor_info(Buffer *b, const GgufTensor *g, uint64_t data_offset) {
    const TensorEntry *e = &g->planned->entry;
    int is_vector = is_vector_kind(g->planned->kind);
    uint32_t n_dims = is_vector ? 1 : 2;
    uint64_t dims[2] = { e->cols, e->rows };
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

// Rows in chunks of about 4 MB of floats: read (or copy Q4), convert, write.
static void write_gguf_tensor(int fd, const char *path, Source *src, const GgufTensor *g, Progress *progress) {
    const PlannedTensor *t = g->planned;
    int rows = (int)t->entry.rows, cols = (int)t->entry.cols;
    int chunk = (int)(((size_t)1 << 20) / (size_t)cols);
    if (chunk < 1) chunk = 1;
    size_t row_bytes = (size_t)(g->nbytes / (uint64_t)rows);
    float *values = xcalloc((size_t)chunk * cols, sizeof(float), "export buffer");
    uint8_t *nibbles = xcalloc((size_t)chunk * cols / 2 + 1, 1, "export buffer");
    uint16_t *scales = xcalloc((size_t)chunk * cols / Q_BLOCK + 1, sizeof(uint16_t), "export buffer");
    uint8_t *out = xcalloc((size_t)chunk * row_bytes, 1, "export buffer");
    for (int begin = 0; begin < rows; begin += chunk) {
        int end = begin + chunk < rows ? begin + chunk : rows, n = end - begin;
        if (g->type == GGML_TYPE_F32) {
            read_finite_rows(src, t, begin, end, values);
            memcpy(out, values, (size_t)n * row_bytes);
        } else if (g->type == GGML_TYPE_Q4_0) {
            read_coded_rows(src, t, TYPE_Q4, Q_BLOCK, begin, end, values, nibbles, scales);
            for (int r = 0; r < n; r++)
                pack_row_q4_0(nibbles + (size_t)r * cols / 2, scales + (size_t)r * cols / Q_BLOCK, cols,
                              (BlockQ4_0 *)(out + (size_t)r * row_bytes));
        } else {
            read_finite_rows(src, t, begin, end, values);
            for (int r = 0; r < n; r++)
                quantize_row_q8_0(values + (size_t)r * cols, cols, (BlockQ8_0 *)(out + (size_t)r * row_bytes));
        }
        write_at(fd, out, (size_t)n * row_bytes, g->offset + (uint64_t)begin * row_bytes, path);
        progress_advance(progress, g->nbytes * (uint64_t)n / (uint64_t)rows, g->name);
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
    int count = gguf_plan_tensors(&plan, ggml_type, tensors, output);

    GgufMetadata metadata = { 0 };
    gguf_put_hyperparameters(&metadata, src, ggml_type, model_name);
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

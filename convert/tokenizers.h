/*
convert/tokenizers.h — every tokenizer export reads (llama2.c's
tokenizer.bin, Hugging Face's tokenizer.json with its tokenizer_config.json,
a synthetic one for random weights) turned into the blob a checkpoint
embeds: llama2.c's tokenizer.bin layout, after the "BBPE" prefix when it is
byte-level (runq.c, "Tokenizer", says how it is read).

What it is not: the encoder. runq.c encodes text; this file only converts
vocabularies, merges and special tokens into the form it reads.

Include after: runq.c, json.h, convert/source.h.
*/

#ifndef EDGE_CONVERT_TOKENIZERS_H
#define EDGE_CONVERT_TOKENIZERS_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// Tokenizers, all turned into llama2.c's tokenizer.bin layout (a byte-level
// one after its "BBPE" prefix: see runq.c)

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} Buffer;

static void buffer_put(Buffer *b, const void *bytes, size_t n) {
    if (b->size + n > b->capacity) {
        b->capacity = (b->size + n) * 2 + 1024;
        b->data = realloc(b->data, b->capacity);
        if (!b->data) die("out of memory building the tokenizer");
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

// The kind's prefix (none for SentencePiece: split_rule 0) and room for max_token_length.
// split_rule: a byte-level tokenizer's SplitRule and BYTE_LEVEL_* flags, a
// SentencePiece one's SP_* flags (none: the plain llama2.c layout).
static void tokenizer_start(Buffer *b, int kind, uint32_t split_rule) {
    if (kind == TOKENIZER_BYTE_LEVEL || split_rule) {
        buffer_put(b, kind == TOKENIZER_BYTE_LEVEL ? BYTE_LEVEL_MAGIC : SENTENCEPIECE_MAGIC, 4);
        buffer_put(b, &split_rule, 4);
    }
    int32_t max_length = 0;
    buffer_put(b, &max_length, 4);
}

static void tokenizer_put_piece(Buffer *b, float score, const char *piece, size_t length) {
    int32_t len = (int32_t)length;
    buffer_put(b, &score, 4);
    buffer_put(b, &len, 4);
    buffer_put(b, piece, length);
}

static void tokenizer_finish(Buffer *b, int32_t max_length) {
    size_t at = b->size >= 4 && (memcmp(b->data, BYTE_LEVEL_MAGIC, 4) == 0 || memcmp(b->data, SENTENCEPIECE_MAGIC, 4) == 0) ? 8 : 0;
    memcpy(b->data + at, &max_length, 4);
}

// A tokenizer.bin file, checked against the model's vocabulary size.
static void read_tokenizer_bin(Source *src, const char *path) {
    src->tokenizer = read_whole_file(path, &src->tokenizer_size);
    Tokenizer check;
    const char *error = build_tokenizer_from_memory(&check, src->tokenizer, src->tokenizer_size, src->header.vocab_size);
    free_tokenizer(&check);
    if (error) die("tokenizer %s for a %d-piece vocabulary: %s", path, src->header.vocab_size, error);
}

// Pieces a random model can encode any text with: byte fallback plus
// printable ASCII; the rest are <unused_N>, never produced by a merge.
static void synthetic_tokenizer(Source *src) {
    Buffer b = { 0 };
    tokenizer_start(&b, TOKENIZER_SENTENCEPIECE, 0);
    int vocab = src->header.vocab_size, id = 0;
    char piece[32];
    const char *specials[] = { "<unk>", "\n<s>\n", "\n</s>\n" };
    for (; id < 3; id++) tokenizer_put_piece(&b, -INFINITY, specials[id], strlen(specials[id]));
    for (int byte = 0; byte < 256 && id < vocab; byte++, id++) {
        snprintf(piece, sizeof piece, "<0x%02X>", byte);
        tokenizer_put_piece(&b, -INFINITY, piece, 6);
    }
    for (char c = ' '; c <= '~' && id < vocab; c++, id++) tokenizer_put_piece(&b, 0.0f, &c, 1);
    for (; id < vocab; id++) {
        int n = snprintf(piece, sizeof piece, "<unused_%d>", id);
        tokenizer_put_piece(&b, -INFINITY, piece, (size_t)n);
    }
    tokenizer_finish(&b, 16);
    src->tokenizer = b.data;
    src->tokenizer_size = b.size;
}

// "▁" (U+2581) is SentencePiece's visible space; tokenizer.bin stores " ".
static size_t replace_sentencepiece_spaces(char *s, size_t length) {
    size_t out = 0;
    for (size_t i = 0; i < length;) {
        if (i + 2 < length + 0 && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96
            && (unsigned char)s[i + 2] == 0x81) {
            s[out++] = ' ';
            i += 3;
        } else {
            s[out++] = s[i++];
        }
    }
    s[out] = '\0';
    return out;
}

// ---- tokenizer.json (Hugging Face): SentencePiece-style BPE with byte
// fallback (Llama 2, TinyLlama, Mistral, Phi-3.5, Gemma) or byte-level BPE
// with one of the pre-tokenizers runq knows (Llama 3's, GPT-2's, SmolLM2's,
// Qwen's). Other kinds are refused with a reason that names the field.

// Llama 3's split rule as tokenizer.json spells it; runq.c's llama3_chunk_end is this regex in C
#define LLAMA3_SPLIT_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|" \
                           " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
// Qwen's (Qwen2, Qwen2.5, Qwen3): Llama 3's with one number character at a time
#define QWEN_SPLIT_REGEX "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|" \
                         " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static int json_is(const Json *j, const char *string) { return j && j->type == JSON_STRING && strcmp(j->string, string) == 0; }
static int json_false(const Json *j) { return !j || j->type == JSON_FALSE; }

// A ByteLevel pre-tokenizer step without a prefix space; use_regex (GPT-2's
// split, true unless said otherwise) as wanted.
static int is_byte_level_step(const Json *step, int use_regex) {
    const Json *regex = json_get(step, "use_regex");
    int uses_regex = !regex || regex->type == JSON_TRUE;
    return json_is(json_get(step, "type"), "ByteLevel") && uses_regex == use_regex && json_false(json_get(step, "add_prefix_space"));
}

// A Split step that keeps every match of this regex as a chunk.
static int is_split_step(const Json *step, const char *regex) {
    return json_is(json_get(step, "type"), "Split") && json_is(json_get(json_get(step, "pattern"), "Regex"), regex)
        && json_is(json_get(step, "behavior"), "Isolated") && json_false(json_get(step, "invert"));
}

// The SplitRule a pre_tokenizer amounts to, 0 if none:
// - Llama 3, Qwen: a Sequence of its Split regex (matches kept as chunks)
//   and a ByteLevel step that only maps bytes (use_regex false);
// - GPT-2: a ByteLevel step alone, with its regex;
// - SmolLM2: a Sequence of Digits (individual_digits) and that ByteLevel step.
static int json_split_rule(const Json *pre_tokenizer) {
    if (is_byte_level_step(pre_tokenizer, 1)) return SPLIT_GPT2;
    const Json *steps = json_get(pre_tokenizer, "pretokenizers");
    if (!json_is(json_get(pre_tokenizer, "type"), "Sequence") || !steps || steps->type != JSON_ARRAY || steps->count != 2)
        return 0;
    const Json *first = &steps->items[0], *second = &steps->items[1];
    if (is_split_step(first, LLAMA3_SPLIT_REGEX) && is_byte_level_step(second, 0)) return SPLIT_LLAMA3;
    if (is_split_step(first, QWEN_SPLIT_REGEX) && is_byte_level_step(second, 0)) return SPLIT_QWEN;
    const Json *individual = json_get(first, "individual_digits");
    if (json_is(json_get(first, "type"), "Digits") && individual && individual->type == JSON_TRUE && is_byte_level_step(second, 1))
        return SPLIT_SMOLLM;
    return 0;
}

// A SentencePiece-style tokenizer.json's normalizer and pre_tokenizer as the
// blob's flags: the text's spaces become "▁" (Replace; tokenizer.bin stores
// " " for it, so that is no change), a "▁" goes before it (Prepend, or a
// Metaspace pre-tokenizer that prepends: the dummy prefix), and Gemma's Split
// on " " finds none left after the Replace. Anything else is refused, naming
// the field.
static int is_space_replace(const Json *step) {
    return json_is(json_get(step, "type"), "Replace") && json_is(json_get(json_get(step, "pattern"), "String"), " ")
        && json_is(json_get(step, "content"), "\xE2\x96\x81");
}

static uint32_t sentencepiece_flags(const Json *root, const char **refusal) {
    const Json *normalizer = json_get(root, "normalizer"), *pre = json_get(root, "pre_tokenizer");
    const Json *steps = json_is(json_get(normalizer, "type"), "Sequence") ? json_get(normalizer, "normalizers") : NULL;
    int prepends = 0, n_steps = steps && steps->type == JSON_ARRAY ? steps->count : normalizer && normalizer->type == JSON_OBJECT;
    for (int i = 0; i < n_steps; i++) {
        const Json *step = steps ? &steps->items[i] : normalizer;
        if (json_is(json_get(step, "type"), "Prepend") && json_is(json_get(step, "prepend"), "\xE2\x96\x81")) prepends = 1;
        else if (!is_space_replace(step)) *refusal = "a SentencePiece-style normalizer step other than Prepend \"\xE2\x96\x81\" and Replace \" \": not supported";
    }
    if (pre && pre->type != JSON_NULL) {
        if (json_is(json_get(pre, "type"), "Metaspace") && json_is(json_get(pre, "replacement"), "\xE2\x96\x81")
            && json_get(pre, "split") && json_get(pre, "split")->type == JSON_FALSE) {
            const Json *scheme = json_get(pre, "prepend_scheme"), *add = json_get(pre, "add_prefix_space");
            prepends = scheme ? !json_is(scheme, "never") : !json_false(add);
        } else if (!(json_is(json_get(pre, "type"), "Split") && json_is(json_get(json_get(pre, "pattern"), "String"), " ")
                     && !prepends && n_steps == 1 && is_space_replace(normalizer))) {
            *refusal = "a SentencePiece-style pre_tokenizer other than Metaspace (without split) or Gemma's Split on \" \": not supported";
        }
    }
    return prepends ? 0 : TOKENIZER_NO_DUMMY_PREFIX;
}

// TOKENIZER_SENTENCEPIECE or TOKENIZER_BYTE_LEVEL, or -1 and why not.
static int json_tokenizer_kind(const Json *root, const char **refusal) {
    const Json *model = json_get(root, "model"), *byte_fallback = json_get(model, "byte_fallback");
    const Json *normalizer = json_get(root, "normalizer");
    int split_rule = json_split_rule(json_get(root, "pre_tokenizer"));
    *refusal = NULL;
    if (!json_is(json_get(model, "type"), "BPE"))
        *refusal = "model.type is not BPE: only BPE tokenizers are supported (SentencePiece-style, and Llama 3's byte-level)";
    else if (byte_fallback && byte_fallback->type == JSON_TRUE)
        return sentencepiece_flags(root, refusal), *refusal ? -1 : TOKENIZER_SENTENCEPIECE;
    else if (!json_is(json_get(json_get(root, "decoder"), "type"), "ByteLevel"))
        *refusal = "model.byte_fallback is not true and the decoder is not ByteLevel: neither SentencePiece-style nor byte-level BPE";
    else if (!split_rule)
        *refusal = "byte-level BPE whose pre_tokenizer is none of Llama 3's, Qwen's, GPT-2's and SmolLM2's: not supported";
    else if (normalizer && normalizer->type != JSON_NULL && !json_is(json_get(normalizer, "type"), "NFC"))
        *refusal = "byte-level BPE with a normalizer other than NFC (Qwen's): not supported";
    else if (!json_false(json_get(model, "ignore_merges")) && split_rule != SPLIT_LLAMA3)
        *refusal = "byte-level BPE with model.ignore_merges but not Llama 3's pre-tokenizer (runq keeps a chunk whole under Llama 3's rule only)";
    else
        return TOKENIZER_BYTE_LEVEL;
    return -1;
}

// model.merges[rank] as its two halves: "a b", or [a, b] in newer files.
static void json_merge(const Json *merges, int rank, const char *path, char *left, char *right, size_t size) {
    const Json *m = &merges->items[rank];
    if (m->type == JSON_STRING) {
        const char *space = strchr(m->string, ' ');
        if (!space || m->length >= size) die("%s: merge %d is not 'a b'", path, rank);
        snprintf(left, size, "%.*s", (int)(space - m->string), m->string);
        snprintf(right, size, "%s", space + 1);
    } else if (m->type == JSON_ARRAY && m->count == 2 && m->items[0].type == JSON_STRING
               && m->items[1].type == JSON_STRING && m->items[0].length < size && m->items[1].length < size) {
        snprintf(left, size, "%s", m->items[0].string);
        snprintf(right, size, "%s", m->items[1].string);
    } else {
        die("%s: merge %d is neither 'a b' nor [a, b]", path, rank);
    }
}

// How many ids tokenizer.json gives (model.vocab and added_tokens: the
// highest plus one), checked against the model's vocab_size (config.json):
// a tokenizer may have fewer, its embedding padded (Qwen's 151669 tokens in
// 151936 rows; the rest become [PAD<id>] pieces, as llama.cpp names them),
// never more in model.vocab. An added token past the embedding is left out:
// the model cannot read or write it (Gemma 3 1B's <image_soft_token>).
static int json_token_count(const Json *root, const char *path, int vocab_size) {
    const Json *vocab = json_get(json_get(root, "model"), "vocab"), *added = json_get(root, "added_tokens");
    double highest = -1;
    for (int i = 0; vocab && vocab->type == JSON_OBJECT && i < vocab->count; i++) {
        const Json *id = &vocab->items[i];
        if (id->type != JSON_NUMBER || id->number < 0 || id->number != (int)id->number)
            die("%s: model.vocab entry '%s' has no whole, non-negative id", path, vocab->keys[i]);
        if (id->number > highest) highest = id->number;
    }
    if (highest >= vocab_size)
        die("%s: model.vocab holds ids up to %.0f, but the model's vocab_size (config.json) is %d: "
            "the embedding has no row for them", path, highest, vocab_size);
    for (int i = 0; added && added->type == JSON_ARRAY && i < added->count; i++) {
        const Json *id = json_get(&added->items[i], "id");
        if (id && id->type == JSON_NUMBER && id->number > highest && id->number < vocab_size) highest = id->number;
    }
    return (int)highest + 1;
}

// "[PAD<id>]": what an embedding row beyond the tokenizer's ids is called.
static char *padding_piece(int id) {
    char *piece = xcalloc(32, 1, "piece");
    snprintf(piece, 32, "[PAD%d]", id);
    return piece;
}

// Enough of a Tokenizer for piece_lookup over pieces given as strings.
static Tokenizer index_strings(char **pieces, int n) {
    Tokenizer t = { .vocab_size = n };
    t.vocab = xcalloc((size_t)n, sizeof(char *), "tokenizer index");
    t.lengths = xcalloc((size_t)n, sizeof(int), "tokenizer index");
    for (int i = 0; i < n; i++) {
        t.vocab[i] = pieces[i] ? pieces[i] : (char *)"";
        t.lengths[i] = (int)strlen(t.vocab[i]);
    }
    index_pieces(&t);
    return t;
}

// SentencePiece kind: vocab gives the ids, merges the priorities. A piece
// made by merge rank r scores -r, so the best-scoring pair is the earliest
// merge, which is what SentencePiece does. Special and byte pieces score
// -inf: text never merges into them.
static const char *sentencepiece_from_json(const Json *root, const char *path, int vocab_size, uint32_t flags, uint8_t **blob,
                                           size_t *size) {
    const Json *model = json_get(root, "model");
    const Json *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY)
        return "model.vocab or model.merges is missing";

    int n_tokens = json_token_count(root, path, vocab_size);
    char **pieces = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    float *scores = xcalloc((size_t)vocab_size, sizeof(float), "tokenizer");
    for (int i = 0; i < vocab_size; i++) scores[i] = -INFINITY;
    for (int i = 0; i < vocab->count; i++) pieces[(int)vocab->items[i].number] = vocab->keys[i];
    Tokenizer lookup = index_strings(pieces, vocab_size);
    for (int rank = 0; rank < merges->count; rank++) {
        char left[1024], right[1024], joined[2048];
        json_merge(merges, rank, path, left, right, sizeof left);
        snprintf(joined, sizeof joined, "%s%s", left, right);
        int id = str_lookup(joined, &lookup);
        if (id < 0 || !pieces[id]) die("%s: merge %d makes '%s', which is not in the vocab", path, rank, joined);
        if (scores[id] == -INFINITY) scores[id] = -(float)rank;
    }
    free_tokenizer(&lookup);
    // added tokens (<unk>, <s>, </s>, ...) take their ids; single characters
    // that no merge makes keep score 0 so the first pass can find them
    const Json *added = json_get(root, "added_tokens");
    for (int i = 0; added && added->type == JSON_ARRAY && i < added->count; i++) {
        const Json *id = json_get(&added->items[i], "id"), *content = json_get(&added->items[i], "content");
        if (!id || id->type != JSON_NUMBER || !content || content->type != JSON_STRING) continue;
        if (id->number < 0) die("%s: added token '%s' has a negative id", path, content->string);
        if (id->number < vocab_size) pieces[(int)id->number] = content->string;
    }
    Buffer b = { 0 };
    int32_t max_length = 1;
    tokenizer_start(&b, TOKENIZER_SENTENCEPIECE, flags);
    for (int i = 0; i < vocab_size; i++) {
        if (!pieces[i] && i < n_tokens) die("%s: no piece has id %d (model.vocab and added_tokens leave it out)", path, i);
        size_t length = pieces[i] ? strlen(pieces[i]) : 0;
        char *piece = pieces[i] ? xcalloc(length + 1, 1, "piece") : padding_piece(i);
        if (pieces[i]) memcpy(piece, pieces[i], length);
        else length = strlen(piece);
        length = replace_sentencepiece_spaces(piece, length);
        int is_byte = length == 6 && strncmp(piece, "<0x", 3) == 0 && piece[5] == '>';
        int is_single_character = length > 0 && length <= 4 && (size_t)(1 + ((unsigned char)piece[0] >= 0xC0)
            + ((unsigned char)piece[0] >= 0xE0) + ((unsigned char)piece[0] >= 0xF0)) == length;
        float score = i < n_tokens ? scores[i] : -INFINITY;
        if (score == -INFINITY && is_single_character && !is_byte && i < n_tokens) score = 0.0f;
        tokenizer_put_piece(&b, score, piece, length);
        if ((int32_t)length > max_length) max_length = (int32_t)length;
        free(piece);
    }
    tokenizer_finish(&b, max_length);
    free(pieces);
    free(scores);
    *blob = b.data;
    *size = b.size;
    return NULL;
}

// GPT-2's byte-level alphabet, which tokenizer.json spells byte-level pieces
// in: a byte that is printable Latin-1 (! to ~, ¡ to ¬, ® to ÿ) stands for
// itself; the 68 others are U+0100 onwards, in byte order ("Ġ" is a space).
static int is_printable_latin1(int byte) {
    return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

#define BYTE_LEVEL_ALPHABET (0x100 + 68)   // code points the alphabet uses are all below this

// byte_of[code point] for the whole alphabet, -1 for code points outside it.
static void byte_level_alphabet(int byte_of[BYTE_LEVEL_ALPHABET]) {
    int moved = 0;
    for (int cp = 0; cp < BYTE_LEVEL_ALPHABET; cp++) byte_of[cp] = -1;
    for (int byte = 0; byte < 256; byte++) byte_of[is_printable_latin1(byte) ? byte : 0x100 + moved++] = byte;
}

// A piece spelled in the alphabet -> its raw bytes in out (room for as many
// bytes as s has). Returns the byte count, or -1 if a character is not in the alphabet.
static int byte_level_decode(const char *s, size_t length, const int byte_of[BYTE_LEVEL_ALPHABET], char *out) {
    int n = 0;
    for (size_t at = 0; at < length;) {
        int char_length;
        uint32_t cp = decode_utf8((const unsigned char *)s + at, length - at, &char_length);
        if (cp >= BYTE_LEVEL_ALPHABET || byte_of[cp] < 0) return -1;
        out[n++] = (char)byte_of[cp];
        at += (size_t)char_length;
    }
    return n;
}

// The id of a merge half, spelled in the alphabet; dies unless it is a piece merging may use.
static int byte_level_merge_half(const Tokenizer *t, const char *half, size_t length, const int byte_of[BYTE_LEVEL_ALPHABET],
                                 const char *path, int rank) {
    char bytes[1024];
    int n = length < sizeof bytes ? byte_level_decode(half, length, byte_of, bytes) : -1;
    int id = n < 0 ? -1 : piece_lookup(t, bytes, (size_t)n);
    if (id < 0 || t->scores[id] == -INFINITY)
        die("%s: merge %d uses '%.*s', which is not a piece of the vocab", path, rank, (int)length, half);
    return id;
}

// runq merges the pair that makes the lowest-ranked piece and, of two pairs
// that make the same piece, the one whose parts rank lowest; any pair that
// joins into a piece may merge. Hugging Face and llama.cpp merge by a merges
// list. The two agree exactly when the list holds every split of a piece
// into two pieces, ordered by (piece, left part, right part) rank: as a list
// converted from tiktoken's ranks is (Llama 3's). Other lists (Qwen's names
// one merge per piece) go into the blob, and runq merges by them.
// Merges are "a b", spelled in the alphabet (which has no space); pairs
// receives each merge's two piece ids. Returns whether the ranks say it all.
static int merges_follow_ranks(const Tokenizer *t, char **merges, int n_merges, const char *path, int *pairs) {
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    int previous[3] = { -1, -1, -1 };   // (piece, left, right) ranks of the merge before
    char *joined = xcalloc(2 * (size_t)t->max_token_length, 1, "merge");
    int in_order = 1;
    for (int rank = 0; rank < n_merges; rank++) {
        const char *space = strchr(merges[rank], ' ');
        if (!space) die("%s: merge %d is not 'a b'", path, rank);
        int a = byte_level_merge_half(t, merges[rank], (size_t)(space - merges[rank]), byte_of, path, rank);
        int b = byte_level_merge_half(t, space + 1, strlen(space + 1), byte_of, path, rank);
        memcpy(joined, t->vocab[a], (size_t)t->lengths[a]);
        memcpy(joined + t->lengths[a], t->vocab[b], (size_t)t->lengths[b]);
        int merged = piece_lookup(t, joined, (size_t)(t->lengths[a] + t->lengths[b]));
        if (merged < 0 || t->scores[merged] == -INFINITY)
            die("%s: merge %d ('%s') makes no piece of the vocab", path, rank, merges[rank]);
        pairs[2 * rank] = a, pairs[2 * rank + 1] = b;
        int key[3] = { (int)-t->scores[merged], (int)-t->scores[a], (int)-t->scores[b] };   // ranks are -scores
        in_order &= key[0] != previous[0] ? key[0] > previous[0] : key[1] != previous[1] ? key[1] > previous[1] : key[2] > previous[2];
        memcpy(previous, key, sizeof key);
    }
    free(joined);
    if (!in_order) return 0;

    int64_t splits = 0;
    for (int id = 0; id < t->vocab_size; id++) {
        if (t->scores[id] == -INFINITY) continue;
        for (int k = 1; k < t->lengths[id]; k++) {
            int a = piece_lookup(t, t->vocab[id], (size_t)k), b = piece_lookup(t, t->vocab[id] + k, (size_t)(t->lengths[id] - k));
            splits += a >= 0 && b >= 0 && t->scores[a] != -INFINITY && t->scores[b] != -INFINITY;
        }
    }
    return splits == n_merges;
}

// A byte-level vocabulary as tokenizer.json or GGUF spells it.
typedef struct {
    int vocab_size;
    char **spelled;          // (vocab_size,) each piece in GPT-2's alphabet, or as it is when special; NULL: no piece
    int *special;            // (vocab_size,) 1 for added / control tokens (<|begin_of_text|>, <|eot_id|>, ...)
    char **merges;           // (n_merges,) "a b", spelled
    int n_merges;
    uint32_t split_rule;     // SplitRule, and the BYTE_LEVEL_* flags
} ByteLevelVocab;

static ByteLevelVocab new_byte_level_vocab(int vocab_size, int n_merges, uint32_t split_rule) {
    ByteLevelVocab v = { .vocab_size = vocab_size, .n_merges = n_merges, .split_rule = split_rule };
    v.spelled = xcalloc((size_t)vocab_size, sizeof(char *), "tokenizer");
    v.special = xcalloc((size_t)vocab_size, sizeof(int), "tokenizer");
    v.merges = xcalloc((size_t)n_merges + 1, sizeof(char *), "tokenizer");
    return v;
}

static void free_byte_level_vocab(ByteLevelVocab *v) {
    for (int i = 0; i < v->vocab_size; i++) free(v->spelled[i]);
    for (int i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->spelled);
    free(v->special);
    free(v->merges);
}

// Byte-level BPE -> a blob: pieces go back from
// the alphabet to raw bytes; a piece's id is its rank (the vocabulary is
// tiktoken's ranks converted), so it scores -id; special tokens score -inf.
// The merges are checked, not stored: the ranks say it all.
static const char *byte_level_blob(const ByteLevelVocab *v, const char *path, uint8_t **blob, size_t *size) {
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    Buffer b = { 0 };
    int32_t max_length = 1;
    tokenizer_start(&b, TOKENIZER_BYTE_LEVEL, v->split_rule);
    for (int id = 0; id < v->vocab_size; id++) {
        const char *spelled = v->spelled[id];
        if (!spelled) die("%s: no piece has id %d (the model's vocabulary has %d)", path, id, v->vocab_size);
        size_t length = strlen(spelled);
        char *bytes = xcalloc(length + 1, 1, "piece");
        int n = v->special[id] ? (int)length : byte_level_decode(spelled, length, byte_of, bytes);
        if (n < 0) die("%s: piece %d '%s' is not spelled in the byte-level alphabet", path, id, spelled);
        if (id >= 1 << 24) die("%s: %d pieces are more than float scores can rank", path, v->vocab_size);
        tokenizer_put_piece(&b, v->special[id] ? -INFINITY : -(float)id, v->special[id] ? spelled : bytes, (size_t)n);
        if (n > max_length) max_length = n;
        free(bytes);
    }
    tokenizer_finish(&b, max_length);
    Tokenizer check;
    const char *refusal = build_tokenizer_from_memory(&check, b.data, b.size, v->vocab_size);
    int *pairs = xcalloc(2 * (size_t)v->n_merges + 1, sizeof(int), "merges");
    if (!refusal && !merges_follow_ranks(&check, v->merges, v->n_merges, path, pairs)) {   // the list goes in the blob
        uint32_t word, count = (uint32_t)v->n_merges;
        memcpy(&word, b.data + 4, 4);
        word |= TOKENIZER_MERGES;
        memcpy(b.data + 4, &word, 4);
        buffer_put(&b, &count, 4);
        buffer_put(&b, pairs, 8 * (size_t)count);
    }
    free(pairs);
    free_tokenizer(&check);
    if (refusal) {
        free(b.data);
        return refusal;
    }
    *blob = b.data;
    *size = b.size;
    return NULL;
}

// tokenizer.json of the byte-level kind (Llama 3, GPT-2, SmolLM2): model.vocab,
// added_tokens (special) and model.merges.
static const char *byte_level_from_json(const Json *root, const char *path, int vocab_size, uint8_t **blob, size_t *size) {
    const Json *model = json_get(root, "model");
    const Json *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!vocab || vocab->type != JSON_OBJECT || !merges || merges->type != JSON_ARRAY)
        return "model.vocab or model.merges is missing";
    uint32_t flags = json_is(json_get(json_get(root, "normalizer"), "type"), "NFC") ? TOKENIZER_NFC : 0;
    ByteLevelVocab v = new_byte_level_vocab(vocab_size, merges->count, (uint32_t)json_split_rule(json_get(root, "pre_tokenizer")) | flags);
    int n_tokens = json_token_count(root, path, vocab_size);
    for (int i = 0; i < vocab->count; i++) {
        int id = (int)vocab->items[i].number;
        if (v.spelled[id]) die("%s: model.vocab entry '%s' shares id %d with another", path, vocab->keys[i], id);
        v.spelled[id] = strdup(vocab->keys[i]);
    }
    const Json *added = json_get(root, "added_tokens");
    for (int i = 0; added && added->type == JSON_ARRAY && i < added->count; i++) {
        const Json *id = json_get(&added->items[i], "id"), *content = json_get(&added->items[i], "content");
        if (!id || id->type != JSON_NUMBER || !content || content->type != JSON_STRING) continue;
        if (id->number < 0) die("%s: added token '%s' has a negative id", path, content->string);
        if (id->number >= vocab_size) continue;
        free(v.spelled[(int)id->number]);
        v.spelled[(int)id->number] = strdup(content->string);
        v.special[(int)id->number] = 1;
    }
    for (int id = n_tokens; id < vocab_size; id++) {
        v.spelled[id] = padding_piece(id);
        v.special[id] = 1;
    }
    for (int rank = 0; rank < merges->count; rank++) {
        char left[1024], right[1024];
        json_merge(merges, rank, path, left, right, sizeof left);
        v.merges[rank] = xcalloc(strlen(left) + strlen(right) + 2, 1, "merge");
        sprintf(v.merges[rank], "%s %s", left, right);
    }
    const char *refusal = byte_level_blob(&v, path, blob, size);
    free_byte_level_vocab(&v);
    return refusal;
}

// A Hugging Face tokenizer.json -> a tokenizer blob for a vocab_size-piece
// model. Returns NULL, or why this kind of tokenizer is not supported.
static const char *tokenizer_from_json(const char *path, int vocab_size, uint8_t **blob, size_t *size) {
    Json root = json_read_file(path);
    const char *refusal;
    int kind = json_tokenizer_kind(&root, &refusal);
    if (kind == TOKENIZER_SENTENCEPIECE)
        refusal = sentencepiece_from_json(&root, path, vocab_size, sentencepiece_flags(&root, &refusal), blob, size);
    else if (kind == TOKENIZER_BYTE_LEVEL) refusal = byte_level_from_json(&root, path, vocab_size, blob, size);
    json_free(&root);
    return refusal;
}

// ---- Chat templates: which family a Jinja chat_template (tokenizer_config.json,
// GGUF's tokenizer.chat_template) belongs to, by the markers each one uses;
// CHAT_NOT_RECORDED if none (runq then goes by the special tokens).
static uint32_t chat_template_of_jinja(const char *jinja) {
    if (strstr(jinja, "<|start_header_id|>")) return CHAT_LLAMA3;
    if (strstr(jinja, "<|im_start|>") && strstr(jinja, "enable_thinking")) return CHAT_QWEN3;
    if (strstr(jinja, "<|im_start|>")) return CHAT_CHATML;
    if (strstr(jinja, "<start_of_turn>")) return CHAT_GEMMA;
    if (strstr(jinja, "<|user|>") && strstr(jinja, "<|end|>")) return CHAT_PHI3;
    if (strstr(jinja, "<|user|>")) return CHAT_ZEPHYR;
    if (strstr(jinja, "<<SYS>>")) return CHAT_LLAMA2;
    return CHAT_NOT_RECORDED;
}

// A token tokenizer_config.json names ("<s>", or {"content": "<s>"}) -> its id, -1 if none.
static int tokenizer_config_token(const Json *config, const char *key, const Tokenizer *t) {
    const Json *v = json_get(config, key);
    if (v && v->type == JSON_OBJECT) v = json_get(v, "content");
    return v && v->type == JSON_STRING ? str_lookup(v->string, t) : -1;
}

// The blob's TOKENIZER_* flags with these set (a plain llama2.c layout gains the "SPMF" header).
static void tokenizer_add_flags(Source *src, uint32_t flags) {
    uint8_t *blob = src->tokenizer;
    int has_header = src->tokenizer_size >= 8
                  && (memcmp(blob, BYTE_LEVEL_MAGIC, 4) == 0 || memcmp(blob, SENTENCEPIECE_MAGIC, 4) == 0);
    if (!has_header) {
        blob = xcalloc(src->tokenizer_size + 8, 1, "tokenizer");
        memcpy(blob, SENTENCEPIECE_MAGIC, 4);
        memcpy(blob + 8, src->tokenizer, src->tokenizer_size);
        free(src->tokenizer);
        src->tokenizer = blob;
        src->tokenizer_size += 8;
    }
    uint32_t word;
    memcpy(&word, blob + 4, 4);
    word |= flags;
    memcpy(blob + 4, &word, 4);
}

// tokenizer_config.json, when the directory has one: the chat template's
// family, BOS and EOS where config.json does not give them, and whether a
// text starts with BOS at all (add_bos_token false, or no bos_token: Qwen).
static void hf_tokenizer_config(Source *src, const char *dir, int need_bos, int need_eos) {
    char *path = path_join(dir, "tokenizer_config.json");
    if (file_exists(path)) {
        Json config = json_read_file(path);
        const Json *jinja = json_get(&config, "chat_template");
        for (int i = 0; jinja && jinja->type == JSON_ARRAY && i < jinja->count; i++)   // [{name, template}, ...]
            if (json_is(json_get(&jinja->items[i], "name"), "default")) jinja = json_get(&jinja->items[i], "template");
        if (jinja && jinja->type == JSON_STRING) src->header.chat_template = chat_template_of_jinja(jinja->string);
        const Json *add_bos = json_get(&config, "add_bos_token"), *bos_token = json_get(&config, "bos_token");
        if ((add_bos && add_bos->type == JSON_FALSE) || (bos_token && bos_token->type == JSON_NULL))
            tokenizer_add_flags(src, TOKENIZER_NO_BOS);
        Tokenizer t;
        if (!build_tokenizer_from_memory(&t, src->tokenizer, src->tokenizer_size, src->header.vocab_size)) {
            int bos = tokenizer_config_token(&config, "bos_token", &t), eos = tokenizer_config_token(&config, "eos_token", &t);
            if (need_bos && bos >= 0) src->header.bos_id = bos;
            if (need_eos && eos >= 0) src->header.eos_id = eos;
        }
        free_tokenizer(&t);
        json_free(&config);
        source_add_input(src, path);
    }
    free(path);
}

#pragma GCC diagnostic pop
#endif

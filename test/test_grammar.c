// test_grammar.c — grammar.h and json_schema.h against llama.cpp's own
// verdicts: every grammar and JSON-schema case of llama.cpp's
// test-grammar-integration (test/data/grammar.cases), each string accepted
// or refused as llama.cpp does; a schema using a keyword json_schema.h
// refuses must be refused naming it. Then llama.cpp's example grammars
// (json, arithmetic, list, chess: written out below) on strings, the JSON
// grammar held to json.h's parser on a few hundred generated texts, the
// partial-UTF-8 rule, grammar errors, and the token mask over a vocabulary.
//     build/test_grammar [test/data/grammar.cases]
// Not a test of sampling under a grammar (test_server.sh runs that through the server).
#define TESTING
#define PROGRAM_NAME "test_grammar"
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../runq.c"
#include "../json.h"
#include "../grammar.h"
#include "../json_schema.h"
#include "check.h"

// ---- the cases file: one escaped line per item
static char *unescape(const char *s, size_t *length) {
    char *out = xcalloc(strlen(s) + 1, 1, "case"), *o = out;
    for (; *s; s++) {
        if (*s != '\\') { *o++ = *s; continue; }
        s++;
        if (*s == 'n') *o++ = '\n';
        else if (*s == 't') *o++ = '\t';
        else if (*s == 'r') *o++ = '\r';
        else if (*s == '\\') *o++ = '\\';
        else if (*s == 'x') { unsigned v; sscanf(s + 1, "%2x", &v); *o++ = (char)v; s += 2; }
    }
    *length = (size_t)(o - out);
    return out;
}

typedef struct {
    Grammar grammar;
    int usable;                   // the grammar parsed (or the schema converted)
    int refused;                  // a schema json_schema.h refuses
    char kind[16], desc[256];
} Case;

static void start_case(Case *c, const char *kind, const char *desc, const char *text) {
    char error[256];
    c->usable = c->refused = 0;
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    snprintf(c->desc, sizeof c->desc, "%s", desc);
    if (strcmp(kind, "grammar") == 0) {
        c->usable = parse_grammar(text, &c->grammar, error, sizeof error);
        CHECK(c->usable, "grammar case '%s' does not parse: %s", desc, error);
        return;
    }
    Json schema;
    if (!json_parse_untrusted(text, strlen(text), &schema, error, sizeof error)) {
        CHECK(0, "schema case '%s' is not JSON: %s", desc, error);
        return;
    }
    char *gbnf = json_schema_to_grammar(&schema, NULL, error, sizeof error);
    json_free(&schema);
    if (!gbnf) {
        c->refused = 1;
        CHECK(strstr(error, "is not supported") != NULL, "schema case '%s' refused without naming a keyword: %s", desc, error);
        return;
    }
    c->usable = parse_grammar(gbnf, &c->grammar, error, sizeof error);
    CHECK(c->usable, "schema case '%s': its grammar does not parse: %s\n%s", desc, error, gbnf);
    free(gbnf);
}

static int run_cases(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s", path);
    char *line = NULL;
    size_t capacity = 0;
    Case c = { 0 };
    int strings = 0, refused_strings = 0, cases = 0, refused_cases = 0;
    char kind[16] = "", desc[256] = "";
    while (getline(&line, &capacity, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        if (strncmp(line, "grammar ", 8) == 0 || strncmp(line, "schema ", 7) == 0) {
            char *space = strchr(line, ' ');
            snprintf(kind, sizeof kind, "%.*s", (int)(space - line), line);
            snprintf(desc, sizeof desc, "%s", space + 1);
        } else if (strncmp(line, "text ", 5) == 0) {
            if (c.usable) free_grammar(&c.grammar);
            size_t n;
            char *text = unescape(line + 5, &n);
            start_case(&c, kind, desc, text);
            free(text);
            cases++;
            refused_cases += c.refused;
        } else if ((line[0] == '+' || line[0] == '-') && line[1] == ' ') {
            strings++;
            if (c.refused) { refused_strings++; continue; }
            if (!c.usable) continue;
            size_t n;
            char *s = unescape(line + 2, &n);
            int want = line[0] == '+', got = grammar_matches(&c.grammar, s, n);
            CHECK(got == want, "%s '%s': llama.cpp %s \"%s\", we %s it", c.kind, c.desc, want ? "accepts" : "refuses", line + 2,
                  got ? "accept" : "refuse");
            free(s);
        }
    }
    if (c.usable) free_grammar(&c.grammar);
    free(line);
    fclose(f);
    printf("llama.cpp's cases: %d (%d schemas refused: their keywords are not supported), %d strings (%d not run)\n",
           cases, refused_cases, strings, refused_strings);
    CHECK(cases >= 40 && strings - refused_strings >= 200, "too few cases ran: %d cases, %d strings", cases, strings - refused_strings);
    return 0;
}

// ---- llama.cpp's example grammars (grammars/*.gbnf of the same release)
static const char json_gbnf[] =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "\n"
    "object ::=\n"
    "  \"{\" ws (\n"
    "            string \":\" ws value\n"
    "    (\",\" ws string \":\" ws value)*\n"
    "  )? \"}\" ws\n"
    "\n"
    "array  ::=\n"
    "  \"[\" ws (\n"
    "            value\n"
    "    (\",\" ws value)*\n"
    "  )? \"]\" ws\n"
    "\n"
    "string ::=\n"
    "  \"\\\"\" (\n"
    "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
    "    \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
    "  )* \"\\\"\" ws\n"
    "\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
    "\n"
    "# Optional space: by convention, applied in this grammar after literal chars when allowed\n"
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

static const char arithmetic_gbnf[] =
    "root  ::= (expr \"=\" ws term \"\\n\")+\n"
    "expr  ::= term ([-+*/] term)*\n"
    "term  ::= ident | num | \"(\" ws expr \")\" ws\n"
    "ident ::= [a-z] [a-z0-9_]* ws\n"
    "num   ::= [0-9]+ ws\n"
    "ws    ::= [ \\t\\n]*\n";

static const char list_gbnf[] = "root ::= item+\n\n# Excludes various line break characters\nitem ::= \"- \" [^\\r\\n\\x0b\\x0c\\x85\\u2028\\u2029]+ \"\\n\"\n";

static const char chess_gbnf[] =
    "# Specifies chess moves as a list in algebraic notation, using PGN conventions\n\n"
    "# Force first move to \"1. \", then any 1-2 digit number after, relying on model to follow the pattern\n"
    "root    ::= \"1. \" move \" \" move \"\\n\" ([1-9] [0-9]? \". \" move \" \" move \"\\n\")+\n"
    "move    ::= (pawn | nonpawn | castle) [+#]?\n\n"
    "# piece type, optional file/rank, optional capture, dest file & rank\n"
    "nonpawn ::= [NBKQR] [a-h]? [1-8]? \"x\"? [a-h] [1-8]\n\n"
    "# include promotion\n"
    "pawn    ::= ([a-h] \"x\")? [a-h] [1-8] (\"=\" [NBKQR])?\n\n"
    "# castling\n"
    "castle  ::= \"O-O\" \"-O\"?\n";

static void expect_matches(const char *name, const char *gbnf, const char *text, int want) {
    Grammar g;
    char error[256];
    if (!parse_grammar(gbnf, &g, error, sizeof error)) { CHECK(0, "%s does not parse: %s", name, error); return; }
    int got = grammar_matches(&g, text, strlen(text));
    CHECK(got == want, "%s: expected %s \"%s\"", name, want ? "to accept" : "to refuse", text);
    free_grammar(&g);
}

static void test_examples(void) {
    expect_matches("json.gbnf", json_gbnf, "{\"a\": [1, 2.5, -3e12, true, null, \"x\\u00e9\\n\"], \"b\": {}}", 1);
    expect_matches("json.gbnf", json_gbnf, "{\"caf\xC3\xA9\": \"\xE2\x82\xAC\"}", 1);
    expect_matches("json.gbnf", json_gbnf, "[1]", 0);                    // root is an object
    expect_matches("json.gbnf", json_gbnf, "{\"a\": 01}", 0);
    expect_matches("json.gbnf", json_gbnf, "{\"a\" 1}", 0);
    expect_matches("json.gbnf", json_gbnf, "{\"a\": \"\x01\"}", 0);
    expect_matches("arithmetic.gbnf", arithmetic_gbnf, "(a+b)*3= c1\n", 1);
    expect_matches("arithmetic.gbnf", arithmetic_gbnf, "1+2=3\nx=y\n", 1);
    expect_matches("arithmetic.gbnf", arithmetic_gbnf, "1+=3\n", 0);
    expect_matches("list.gbnf", list_gbnf, "- one\n- two \xE2\x82\xAC\n", 1);
    expect_matches("list.gbnf", list_gbnf, "- one\r\n", 0);
    expect_matches("list.gbnf", list_gbnf, "- a\xE2\x80\xA8" "b\n", 0);   // U+2028 is excluded
    expect_matches("chess.gbnf", chess_gbnf, "1. e4 e5\n2. Nf3 Nc6\n3. O-O exd4+\n", 1);
    expect_matches("chess.gbnf", chess_gbnf, "1. e4 e5\n", 0);
    expect_matches("chess.gbnf", chess_gbnf, "1. e9 e5\n2. Nf3 Nc6\n", 0);
}

// ---- json.gbnf against json.h's parser: generated JSON texts, whole and mutated
static unsigned long long rng = 0x1234567;
static int pick(int n) { return (int)(random_u32(&rng) % (unsigned)n); }

typedef struct { char data[4096]; size_t length; } Text_;
static void random_json(Text_ *out, int depth);
static void put(Text_ *t, const char *s) {
    size_t n = strlen(s);
    if (t->length + n < sizeof t->data) { memcpy(t->data + t->length, s, n); t->length += n; t->data[t->length] = '\0'; }
}
static void random_value(Text_ *t, int depth) {
    static const char *const atoms[] = { "0", "-1", "3.25", "1e5", "-0.5E-3", "true", "false", "null", "\"\"", "\"a b\"",
                                         "\"\\\"q\\\\\"", "\"\\u00e9\"", "\"\xC3\xA9\"", "12345678901234567" };
    int kind = depth > 3 ? 2 : pick(3);
    if (kind == 0) random_json(t, depth + 1);
    else if (kind == 1) {
        put(t, "[");
        for (int i = 0, n = pick(4); i < n; i++) { if (i) put(t, pick(2) ? "," : ", "); random_value(t, depth + 1); }
        put(t, "]");
    } else put(t, atoms[pick((int)(sizeof atoms / sizeof atoms[0]))]);
}
static void random_json(Text_ *t, int depth) {
    put(t, "{");
    for (int i = 0, n = pick(4); i < n; i++) {
        if (i) put(t, pick(2) ? "," : ", ");
        put(t, pick(2) ? "\"k\":" : "\"key\": ");
        random_value(t, depth);
    }
    put(t, "}");
}

static void test_json_differential(void) {
    Grammar g;
    char error[256];
    if (!parse_grammar(json_gbnf, &g, error, sizeof error)) { CHECK(0, "json.gbnf: %s", error); return; }
    int agreed = 0, accepted = 0, total = 0;
    for (int i = 0; i < 400; i++) {
        Text_ t = { .length = 0 };
        t.data[0] = '\0';
        random_json(&t, 0);
        if (i % 2) {   // mutate one byte: many mutants are no JSON any more
            static const char mutations[] = "{}[],:\"x0- \\";
            if (t.length > 0) t.data[pick((int)t.length)] = mutations[pick((int)sizeof mutations - 1)];
        }
        Json parsed;
        int json_ok = json_parse_untrusted(t.data, t.length, &parsed, error, sizeof error);
        if (json_ok) { json_ok = parsed.type == JSON_OBJECT; json_free(&parsed); }
        // json.gbnf bounds numbers (16 integer digits, exponents without 0 after the first digit): outside that, skip
        if (strstr(t.data, "12345678901234567") || strstr(t.data, "e0") || strstr(t.data, "E0")) continue;
        int grammar_ok = grammar_matches(&g, t.data, t.length);
        total++;
        accepted += grammar_ok;
        if (grammar_ok == json_ok) agreed++;
        else CHECK(0, "json.gbnf %s but json.h %s: %s", grammar_ok ? "accepts" : "refuses", json_ok ? "accepts" : "refuses", t.data);
    }
    CHECK(agreed == total && accepted > total / 4 && accepted < total, "json.gbnf and json.h: %d of %d agree, %d accepted", agreed, total,
          accepted);
    free_grammar(&g);
}

// ---- the pieces the sampler relies on
static void test_partial_utf8_and_mask(void) {
    Grammar g;
    char error[256];
    CHECK(parse_grammar("root ::= \"\xC3\xA9t\xC3\xA9\" | [a-c]+ \"!\"", &g, error, sizeof error), "%s", error);
    GrammarState state;
    GrammarWalk walk;
    grammar_start(&g, &state);
    grammar_walk_init(&walk, &g);
    const unsigned char e_first[] = { 0xC3 }, e_second[] = { 0xA9 }, other[] = { 0xC4 }, bad[] = { 0xA9 };
    CHECK(grammar_allows(&walk, &state, e_first, 1), "the first byte of é (a token ending inside it) is allowed");
    CHECK(!grammar_allows(&walk, &state, other, 1), "a byte starting another character is refused");
    CHECK(!grammar_allows(&walk, &state, bad, 1), "a stray continuation byte is refused");
    CHECK(grammar_allows(&walk, &state, (const unsigned char *)"ab", 2) && !grammar_allows(&walk, &state, (const unsigned char *)"ad", 2),
          "whole tokens: ab allowed, ad refused");
    CHECK(grammar_accept(&walk, &state, e_first, 1) && !grammar_complete(&state), "é's first byte taken: incomplete");
    CHECK(grammar_accept(&walk, &state, e_second, 1), "é's second byte finishes the character");
    CHECK(grammar_accept(&walk, &state, (const unsigned char *)"t\xC3\xA9", 3) && grammar_complete(&state) && grammar_finished(&state),
          "\"été\" is complete and nothing may follow");
    CHECK(!grammar_allows(&walk, &state, (const unsigned char *)"a", 1), "nothing after the end");
    grammar_state_free(&state);
    grammar_start(&g, &state);
    CHECK(grammar_accept(&walk, &state, (const unsigned char *)"abc!", 4) && grammar_finished(&state), "abc! complete");
    grammar_state_free(&state);
    grammar_walk_free(&walk);
    free_grammar(&g);
}

static void expect_refused(const char *gbnf, const char *want) {
    Grammar g;
    char error[256] = "";
    int ok = parse_grammar(gbnf, &g, error, sizeof error);
    if (ok) free_grammar(&g);
    CHECK(!ok && strstr(error, want), "grammar %s: expected an error with '%s', got '%s'", gbnf, want, ok ? "(accepted)" : error);
}

static void test_errors(void) {
    expect_refused("root ::= foo", "undefined rule 'foo'");
    expect_refused("item ::= \"a\"", "no rule named 'root'");
    expect_refused("root ::= root \"a\" | \"b\"", "left recursive");
    expect_refused("root ::= \"a\" x\nx ::= y? x \"b\"\ny ::= \"c\"", "left recursive");
    expect_refused("root ::= \"abc", "unterminated literal");
    expect_refused("root ::= [a-", "unexpected end");
    expect_refused("root ::= \"a\"{3000}", "repetitions");
    expect_refused("root ::= (\"a\"", "expecting ')'");
    expect_refused("root ::= <think>", "token references");
    expect_refused("root ::= \"\\q\"", "unknown escape");
    expect_refused("root ::= \"a\"\nroot ::= \"b\"", "defined twice");
    expect_refused("root ::= \"a\" ::= \"b\"", "expecting a newline");
    // a JSON schema with a keyword it cannot honour: refused, naming it
    Json schema;
    char error[256];
    const char *text = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^x\"}}}";
    json_parse_untrusted(text, strlen(text), &schema, error, sizeof error);
    char *gbnf = json_schema_to_grammar(&schema, NULL, error, sizeof error);
    CHECK(!gbnf && strstr(error, "'pattern' is not supported"), "pattern refused: %s", gbnf ? gbnf : error);
    free(gbnf);
    json_free(&schema);
    // a recursive schema through $ref converts, and its grammar nests
    text = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":3},"
           "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"},\"maxItems\":2}},\"required\":[\"name\"]}},"
           "\"$ref\":\"#/$defs/node\"}";
    json_parse_untrusted(text, strlen(text), &schema, error, sizeof error);
    gbnf = json_schema_to_grammar(&schema, NULL, error, sizeof error);
    CHECK(gbnf != NULL, "recursive $ref: %s", error);
    Grammar g;
    if (gbnf && parse_grammar(gbnf, &g, error, sizeof error)) {
        const char *nested = "{\"name\": \"a\", \"kids\": [{\"name\": \"b\"}, {\"name\": \"c\", \"kids\": []}]}";
        CHECK(grammar_matches(&g, nested, strlen(nested)), "recursive $ref accepts a nested tree");
        CHECK(!grammar_matches(&g, "{\"name\": \"abcd\"}", 16), "maxLength 3 refuses 4 characters");
        CHECK(!grammar_matches(&g, "{\"kids\": []}", 12), "name is required");
        free_grammar(&g);
    } else {
        CHECK(0, "recursive $ref grammar: %s\n%s", error, gbnf ? gbnf : "");
    }
    free(gbnf);
    json_free(&schema);
}

int main(int argc, char **argv) {
    run_cases(argc > 1 ? argv[1] : "test/data/grammar.cases");
    test_examples();
    test_json_differential();
    test_partial_utf8_and_mask();
    test_errors();
    return check_summary("test_grammar");
}

/*
grammar.h — llama.cpp's GBNF grammars for constrained generation: a grammar's
text parsed into rules, a pushdown matcher that follows it one code point at a
time, and the test the server's sampler asks of every token: can the bytes
this token decodes to continue the text so far?

What it is: llama.cpp's grammar language as its grammars use it (rules
`name ::= ...`, alternatives `|`, literals "..." with \x \u \U \t \r \n
escapes, character classes [a-z] [^...], `.`, groups ( ), repetitions * + ?
{m} {m,} {m,n}, comments #), and llama.cpp's matching: stacks of grammar
positions, advanced over code points; a token that ends inside a UTF-8
character is allowed when some continuation could still match (llama.cpp's
partial UTF-8 rule). Left recursion is refused, as llama.cpp refuses it.
What it is not: llama.cpp's token references (<[id]>, <think>) or lazy
grammars with regex triggers; nor a general parser (no parse tree).

Include after: runq.c (xcalloc, utf8_next).
*/

#ifndef EDGE_GRAMMAR_H
#define EDGE_GRAMMAR_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

#define GRAMMAR_MAX_REPETITION 2000       // llama.cpp's bound on {m,n}
#define GRAMMAR_MAX_ELEMENTS 200000       // a grammar's size, so a request cannot ask for unbounded memory
#define GRAMMAR_MAX_STACKS 4096           // live parses at once: an ambiguous grammar past this is refused
#define GRAMMAR_MAX_DEPTH 1024            // a stack's depth (nesting)
#define GRAMMAR_MAX_NESTING 64            // groups within groups in a grammar's text

// ----------------------------------------------------------------------------
// Rules: each a list of elements; alternatives separated by ALT, the last
// closed by END. A character class is CHAR or CHAR_NOT, then CHAR_ALT for
// more characters and CHAR_RNG_UPPER for the upper end of a range.

enum GrammarElementType { G_END, G_ALT, G_RULE_REF, G_CHAR, G_CHAR_NOT, G_CHAR_RNG_UPPER, G_CHAR_ALT, G_CHAR_ANY };

typedef struct {
    uint8_t type;            // GrammarElementType
    uint32_t value;          // a code point, or a rule's index
} GrammarElement;

typedef struct {
    GrammarElement *elements;   // every rule's elements, back to back
    int n_elements;
    int *rule_start;            // (n_rules,) index of each rule's first element
    int n_rules;
    int root;                   // the rule named "root"
} Grammar;

// ----------------------------------------------------------------------------
// Parsing: llama.cpp's grammar_parser, in C. Each failure is a message and 0.

typedef struct {
    GrammarElement *e;
    int count, capacity;
    int defined;
} GrammarRuleBuild;

typedef struct {
    const char *source;
    char **names;                 // (n_rules,) names, generated ones as base_N
    GrammarRuleBuild *rules;
    int n_rules, capacity;
    int total_elements;
    GrammarRuleBuild *pending[GRAMMAR_MAX_NESTING * 3 + 8];   // rules being built: a failure frees them
    int n_pending, nesting;
    char *error;
    size_t error_size;
    jmp_buf fail;
} GrammarParser;

__attribute__((format(printf, 3, 4)))
static void grammar_fail(GrammarParser *p, const char *at, const char *fmt, ...) {
    char message[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (at) snprintf(p->error, p->error_size, "grammar: %s at byte %td", message, at - p->source);
    else snprintf(p->error, p->error_size, "grammar: %s", message);
    longjmp(p->fail, 1);
}

static int grammar_symbol(GrammarParser *p, const char *name, size_t length) {
    for (int i = 0; i < p->n_rules; i++)
        if (strlen(p->names[i]) == length && memcmp(p->names[i], name, length) == 0) return i;
    if (p->n_rules == p->capacity) {
        p->capacity = p->capacity * 2 + 16;
        p->names = realloc(p->names, (size_t)p->capacity * sizeof *p->names);
        p->rules = realloc(p->rules, (size_t)p->capacity * sizeof *p->rules);
        if (!p->names || !p->rules) die("out of memory parsing a grammar");
    }
    p->names[p->n_rules] = xcalloc(length + 1, 1, "grammar rule name");
    memcpy(p->names[p->n_rules], name, length);
    memset(&p->rules[p->n_rules], 0, sizeof p->rules[0]);
    return p->n_rules++;
}

// A new rule for a group or a repetition inside rule `base`: "base_N".
static int grammar_generated_symbol(GrammarParser *p, int base) {
    char name[300];
    snprintf(name, sizeof name, "%.200s_%d", p->names[base], p->n_rules);
    return grammar_symbol(p, name, strlen(name));
}

static void grammar_push(GrammarParser *p, GrammarRuleBuild *r, int type, uint32_t value) {
    if (++p->total_elements > GRAMMAR_MAX_ELEMENTS) grammar_fail(p, NULL, "more than %d elements", GRAMMAR_MAX_ELEMENTS);
    if (r->count == r->capacity) {
        r->capacity = r->capacity * 2 + 16;
        r->e = realloc(r->e, (size_t)r->capacity * sizeof *r->e);
        if (!r->e) die("out of memory parsing a grammar");
    }
    r->e[r->count++] = (GrammarElement){ (uint8_t)type, value };
}

// A rule being built is registered (pending) until it is set or dropped.
static void grammar_begin_build(GrammarParser *p, GrammarRuleBuild *r) {
    memset(r, 0, sizeof *r);
    if (p->n_pending == (int)(sizeof p->pending / sizeof p->pending[0])) grammar_fail(p, NULL, "nested too deeply");
    p->pending[p->n_pending++] = r;
}

static void grammar_end_build(GrammarParser *p, GrammarRuleBuild *r) {
    for (int i = p->n_pending - 1; i >= 0; i--)
        if (p->pending[i] == r) { p->pending[i] = p->pending[--p->n_pending]; return; }
}

static void grammar_set_rule(GrammarParser *p, int id, GrammarRuleBuild *built) {
    grammar_end_build(p, built);
    p->rules[id] = *built;
    p->rules[id].defined = 1;
}

static int grammar_is_word_char(char c) { return isalnum((unsigned char)c) || c == '-'; }

static const char *grammar_space(const char *s, int newline_ok) {
    while (*s == ' ' || *s == '\t' || *s == '#' || (newline_ok && (*s == '\r' || *s == '\n'))) {
        if (*s == '#') while (*s && *s != '\r' && *s != '\n') s++;
        else s++;
    }
    return s;
}

static uint32_t grammar_hex(GrammarParser *p, const char **s, int digits) {
    uint32_t value = 0;
    for (int i = 0; i < digits; i++) {
        char c = (*s)[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0) grammar_fail(p, *s, "expecting %d hex digits", digits);
        value = value << 4 | (uint32_t)v;
    }
    *s += digits;
    return value;
}

// One character of a literal or a class: an escape, or a UTF-8 character.
static uint32_t grammar_char(GrammarParser *p, const char **s) {
    const char *at = *s;
    if (*at == '\\') {
        *s = at + 2;
        switch (at[1]) {
        case 'x': return grammar_hex(p, s, 2);
        case 'u': return grammar_hex(p, s, 4);
        case 'U': return grammar_hex(p, s, 8);
        case 't': return '\t';
        case 'r': return '\r';
        case 'n': return '\n';
        case '\\': case '"': case '[': case ']': case '-': return (uint32_t)at[1];
        default: grammar_fail(p, at, "unknown escape");
        }
    }
    if (!*at) grammar_fail(p, at, "unexpected end of input");
    int length = utf8_next((const unsigned char *)at, strlen(at));
    if (length <= 0) grammar_fail(p, at, "ill-formed UTF-8");
    const unsigned char *u = (const unsigned char *)at;
    uint32_t cp = length == 1 ? u[0] : length == 2 ? (u[0] & 0x1Fu) << 6 | (u[1] & 0x3Fu)
                : length == 3 ? (u[0] & 0x0Fu) << 12 | (u[1] & 0x3Fu) << 6 | (u[2] & 0x3Fu)
                : (u[0] & 0x07u) << 18 | (u[1] & 0x3Fu) << 12 | (u[2] & 0x3Fu) << 6 | (u[3] & 0x3Fu);
    *s = at + length;
    return cp;
}

static const char *grammar_alternates(GrammarParser *p, const char *s, int rule_id, int nested);

// S{min,max} rewritten as llama.cpp does: S repeated min times, then max-min
// optional copies as nested rules (S' ::= S S' | for no maximum).
static void grammar_repeat(GrammarParser *p, GrammarRuleBuild *rule, int last_start, int rule_id, const char *at,
                           long min_times, long max_times) {
    if (last_start == rule->count) grammar_fail(p, at, "expecting an item before */+/?/{");
    int n_last = rule->count - last_start;
    if ((long)n_last * (min_times > 1 ? min_times : 1) > GRAMMAR_MAX_ELEMENTS) grammar_fail(p, at, "repetition too large");
    GrammarRuleBuild copy;
    grammar_begin_build(p, &copy);
    copy.e = xcalloc((size_t)n_last, sizeof *copy.e, "grammar repetition");
    memcpy(copy.e, rule->e + last_start, (size_t)n_last * sizeof *copy.e);
    const GrammarElement *last = copy.e;
    if (min_times == 0) { p->total_elements -= n_last; rule->count = last_start; }
    for (long i = 1; i < min_times; i++)
        for (int k = 0; k < n_last; k++) grammar_push(p, rule, last[k].type, last[k].value);
    long n_optional = max_times < 0 ? 1 : max_times - min_times;
    int previous = 0;
    for (long i = 0; i < n_optional; i++) {
        GrammarRuleBuild optional;
        grammar_begin_build(p, &optional);
        int id = grammar_generated_symbol(p, rule_id);
        for (int k = 0; k < n_last; k++) grammar_push(p, &optional, last[k].type, last[k].value);
        if (i > 0 || max_times < 0) grammar_push(p, &optional, G_RULE_REF, (uint32_t)(max_times < 0 ? id : previous));
        grammar_push(p, &optional, G_ALT, 0);
        grammar_push(p, &optional, G_END, 0);
        grammar_set_rule(p, id, &optional);
        previous = id;
    }
    if (n_optional > 0) grammar_push(p, rule, G_RULE_REF, (uint32_t)previous);
    grammar_end_build(p, &copy);
    free(copy.e);
}

static long grammar_int(GrammarParser *p, const char **s) {
    if (!isdigit((unsigned char)**s)) grammar_fail(p, *s, "expecting an integer");
    long value = 0;
    while (isdigit((unsigned char)**s)) {
        if (value < 100000000) value = value * 10 + (**s - '0');
        (*s)++;
    }
    return value;
}

static const char *grammar_sequence(GrammarParser *p, const char *s, int rule_id, GrammarRuleBuild *rule, int nested) {
    int last_start = rule->count;
    while (*s) {
        const char *at = s;
        if (*s == '"') {
            s++;
            last_start = rule->count;
            while (*s != '"') {
                if (!*s) grammar_fail(p, at, "unterminated literal");
                grammar_push(p, rule, G_CHAR, grammar_char(p, &s));
            }
            s = grammar_space(s + 1, nested);
        } else if (*s == '[') {
            s++;
            int start_type = G_CHAR;
            if (*s == '^') { s++; start_type = G_CHAR_NOT; }
            last_start = rule->count;
            while (*s != ']') {
                if (!*s) grammar_fail(p, at, "unterminated character class");
                uint32_t c = grammar_char(p, &s);
                grammar_push(p, rule, last_start < rule->count ? G_CHAR_ALT : start_type, c);
                if (s[0] == '-' && s[1] != ']') {
                    if (!s[1]) grammar_fail(p, s, "unexpected end of input");
                    s++;
                    grammar_push(p, rule, G_CHAR_RNG_UPPER, grammar_char(p, &s));
                }
            }
            if (last_start == rule->count) {   // [] matches nothing; llama.cpp leaves such a class malformed
                grammar_fail(p, at, "empty character class");
            }
            s = grammar_space(s + 1, nested);
        } else if (grammar_is_word_char(*s)) {
            const char *end = s;
            while (grammar_is_word_char(*end)) end++;
            int ref = grammar_symbol(p, s, (size_t)(end - s));
            s = grammar_space(end, nested);
            last_start = rule->count;
            grammar_push(p, rule, G_RULE_REF, (uint32_t)ref);
        } else if (*s == '(') {
            if (++p->nesting > GRAMMAR_MAX_NESTING) grammar_fail(p, s, "groups nested deeper than %d", GRAMMAR_MAX_NESTING);
            s = grammar_space(s + 1, 1);
            int sub = grammar_generated_symbol(p, rule_id);
            s = grammar_alternates(p, s, sub, 1);
            last_start = rule->count;
            grammar_push(p, rule, G_RULE_REF, (uint32_t)sub);
            if (*s != ')') grammar_fail(p, s, "expecting ')'");
            p->nesting--;
            s = grammar_space(s + 1, nested);
        } else if (*s == '.') {
            last_start = rule->count;
            grammar_push(p, rule, G_CHAR_ANY, 0);
            s = grammar_space(s + 1, nested);
        } else if (*s == '*' || *s == '+' || *s == '?') {
            char op = *s;
            s = grammar_space(s + 1, nested);
            grammar_repeat(p, rule, last_start, rule_id, at, op == '+' ? 1 : 0, op == '?' ? 1 : -1);
        } else if (*s == '{') {
            s = grammar_space(s + 1, nested);
            long min_times = grammar_int(p, &s), max_times = -1;
            s = grammar_space(s, nested);
            if (*s == '}') {
                max_times = min_times;
            } else if (*s == ',') {
                s = grammar_space(s + 1, nested);
                if (isdigit((unsigned char)*s)) { max_times = grammar_int(p, &s); s = grammar_space(s, nested); }
                if (*s != '}') grammar_fail(p, s, "expecting '}'");
            } else {
                grammar_fail(p, s, "expecting ',' or '}'");
            }
            s = grammar_space(s + 1, nested);
            if (min_times > GRAMMAR_MAX_REPETITION) grammar_fail(p, at, "more than %d repetitions", GRAMMAR_MAX_REPETITION);
            if (max_times > GRAMMAR_MAX_REPETITION) max_times = -1;   // as llama.cpp: a huge maximum is no maximum
            if (max_times >= 0 && max_times < min_times) grammar_fail(p, at, "{m,n} with n < m");
            grammar_repeat(p, rule, last_start, rule_id, at, min_times, max_times);
        } else if (*s == '<' || *s == '!') {
            grammar_fail(p, s, "token references (<...>) are not supported");
        } else {
            break;
        }
    }
    return s;
}

static const char *grammar_alternates(GrammarParser *p, const char *s, int rule_id, int nested) {
    GrammarRuleBuild rule;
    grammar_begin_build(p, &rule);
    s = grammar_sequence(p, s, rule_id, &rule, nested);
    while (*s == '|') {
        grammar_push(p, &rule, G_ALT, 0);
        s = grammar_space(s + 1, 1);
        s = grammar_sequence(p, s, rule_id, &rule, nested);
    }
    grammar_push(p, &rule, G_END, 0);
    grammar_set_rule(p, rule_id, &rule);
    return s;
}

static const char *grammar_rule(GrammarParser *p, const char *s) {
    const char *end = s;
    while (grammar_is_word_char(*end)) end++;
    if (end == s) grammar_fail(p, s, "expecting a rule name");
    int id = grammar_symbol(p, s, (size_t)(end - s));
    if (p->rules[id].defined) grammar_fail(p, s, "rule '%.*s' defined twice", (int)(end - s), s);
    s = grammar_space(end, 0);
    if (strncmp(s, "::=", 3) != 0) grammar_fail(p, s, "expecting ::=");
    s = grammar_space(s + 3, 1);
    s = grammar_alternates(p, s, id, 0);
    if (*s == '\r') s += s[1] == '\n' ? 2 : 1;
    else if (*s == '\n') s++;
    else if (*s) grammar_fail(p, s, "expecting a newline or the end");
    return grammar_space(s, 1);
}

static int grammar_is_end_of_sequence(const GrammarElement *e) { return e->type == G_END || e->type == G_ALT; }

// llama.cpp's test: a rule that can reach itself without consuming a character.
static int grammar_left_recursive(const GrammarParser *p, int rule, char *in_progress, char *may_be_empty) {
    if (in_progress[rule]) return 1;
    in_progress[rule] = 1;
    const GrammarRuleBuild *r = &p->rules[rule];
    int at_start = 1;
    for (int i = 0; i < r->count; i++) {
        if (grammar_is_end_of_sequence(&r->e[i])) { if (at_start) { may_be_empty[rule] = 1; break; } at_start = 1; }
        else at_start = 0;
    }
    int leftmost = 1;
    for (int i = 0; i < r->count; i++) {
        const GrammarElement *e = &r->e[i];
        if (e->type == G_RULE_REF && leftmost) {
            if (grammar_left_recursive(p, (int)e->value, in_progress, may_be_empty)) return 1;
            if (!may_be_empty[e->value]) leftmost = 0;
        } else {
            leftmost = grammar_is_end_of_sequence(e);
        }
    }
    in_progress[rule] = 0;
    return 0;
}

static void grammar_parser_free(GrammarParser *p) {
    for (int i = 0; i < p->n_pending; i++) free(p->pending[i]->e);
    for (int i = 0; i < p->n_rules; i++) { free(p->names[i]); free(p->rules[i].e); }
    free(p->names);
    free(p->rules);
}

static void free_grammar(Grammar *g) {
    free(g->elements);
    free(g->rule_start);
    memset(g, 0, sizeof *g);
}

// GBNF text into g; 0 and a message in error when it is not a grammar we can run.
static int parse_grammar(const char *text, Grammar *g, char *error, size_t error_size) {
    GrammarParser p = { .source = text, .error = error, .error_size = error_size };
    memset(g, 0, sizeof *g);
    if (setjmp(p.fail)) { grammar_parser_free(&p); return 0; }
    const char *s = grammar_space(text, 1);
    while (*s) s = grammar_rule(&p, s);
    for (int i = 0; i < p.n_rules; i++)
        if (!p.rules[i].defined) grammar_fail(&p, NULL, "undefined rule '%s'", p.names[i]);
    int root = grammar_symbol(&p, "root", 4);
    if (!p.rules[root].defined) grammar_fail(&p, NULL, "no rule named 'root'");
    char *in_progress = xcalloc((size_t)p.n_rules, 2, "grammar check");
    for (int i = 0; i < p.n_rules; i++) {
        memset(in_progress, 0, (size_t)p.n_rules * 2);
        if (grammar_left_recursive(&p, i, in_progress, in_progress + p.n_rules)) {
            free(in_progress);
            grammar_fail(&p, NULL, "rule '%s' is left recursive", p.names[i]);
        }
    }
    free(in_progress);
    g->n_rules = p.n_rules;
    g->root = root;
    g->rule_start = xcalloc((size_t)p.n_rules, sizeof(int), "grammar");
    g->elements = xcalloc((size_t)p.total_elements + 1, sizeof(GrammarElement), "grammar");
    for (int i = 0; i < p.n_rules; i++) {
        g->rule_start[i] = g->n_elements;
        memcpy(g->elements + g->n_elements, p.rules[i].e, (size_t)p.rules[i].count * sizeof(GrammarElement));
        g->n_elements += p.rules[i].count;
    }
    grammar_parser_free(&p);
    return 1;
}

// ----------------------------------------------------------------------------
// Matching. A stack is the grammar positions still to match, innermost last;
// a parse state is every stack still alive (the grammar may be ambiguous),
// plus the bytes of a character a token left unfinished. The empty stack is
// a complete parse.

typedef struct {
    int *items;              // every stack's element indexes, back to back
    int *ends;               // (n_stacks,) where each stack ends in items
    int n_stacks, n_items;
    int items_capacity, stacks_capacity;
    int overflow;            // past GRAMMAR_MAX_STACKS or GRAMMAR_MAX_DEPTH: the grammar is too ambiguous to follow
} GrammarStacks;

typedef struct {
    uint32_t value;          // the bits of an unfinished character so far
    int n_remain;            // its continuation bytes still to come; -1: the bytes are no UTF-8
    unsigned char bytes[4];  // its bytes so far (well-formed as far as they go: runq.c's utf8_next)
    int n_bytes;
} PartialUtf8;

typedef struct {
    GrammarStacks stacks;
    PartialUtf8 partial;
} GrammarState;

static int stack_begin(const GrammarStacks *s, int i) { return i == 0 ? 0 : s->ends[i - 1]; }

static int grammar_stacks_has(const GrammarStacks *s, const int *stack, int depth) {
    for (int i = 0; i < s->n_stacks; i++) {
        int begin = stack_begin(s, i);
        if (s->ends[i] - begin == depth && (depth == 0 || memcmp(s->items + begin, stack, (size_t)depth * sizeof(int)) == 0)) return 1;
    }
    return 0;
}

static void grammar_stacks_add(GrammarStacks *s, const int *stack, int depth) {
    if (grammar_stacks_has(s, stack, depth)) return;
    if (s->n_stacks >= GRAMMAR_MAX_STACKS) { s->overflow = 1; return; }
    if (depth > 0 && s->n_items + depth > s->items_capacity) {
        s->items_capacity = (s->n_items + depth) * 2 + 64;
        s->items = realloc(s->items, (size_t)s->items_capacity * sizeof(int));
        if (!s->items) die("out of memory following a grammar");
    }
    if (s->n_stacks == s->stacks_capacity) {
        s->stacks_capacity = s->stacks_capacity * 2 + 16;
        s->ends = realloc(s->ends, (size_t)s->stacks_capacity * sizeof(int));
        if (!s->ends) die("out of memory following a grammar");
    }
    if (depth > 0) memcpy(s->items + s->n_items, stack, (size_t)depth * sizeof(int));
    s->n_items += depth;
    s->ends[s->n_stacks++] = s->n_items;
}

static void grammar_stacks_clear(GrammarStacks *s) { s->n_stacks = s->n_items = 0; s->overflow = 0; }
static void grammar_stacks_free(GrammarStacks *s) { free(s->items); free(s->ends); memset(s, 0, sizeof *s); }

// A stack whose top may be a rule reference, expanded into the stacks whose
// tops are characters to match (or the empty stack): llama.cpp's
// advance_stack. A stack met twice in one expansion is expanded once (seen):
// a rule that can be empty without saying so, as in ( [x]* )*, would
// otherwise expand forever. stack has room for GRAMMAR_MAX_DEPTH + 2 items;
// its contents are kept.
static void grammar_expand(const Grammar *g, int *stack, int depth, GrammarStacks *out, GrammarStacks *seen) {
    if (grammar_stacks_has(seen, stack, depth)) return;
    grammar_stacks_add(seen, stack, depth);
    if (seen->overflow) { out->overflow = 1; return; }
    if (depth == 0) { grammar_stacks_add(out, stack, 0); return; }
    int top = stack[depth - 1];
    const GrammarElement *e = &g->elements[top];
    if (e->type != G_RULE_REF) { grammar_stacks_add(out, stack, depth); return; }
    if (depth > GRAMMAR_MAX_DEPTH) { out->overflow = 1; return; }
    int alternative = g->rule_start[e->value];
    for (;;) {
        int d = depth - 1;
        if (!grammar_is_end_of_sequence(&g->elements[top + 1])) stack[d++] = top + 1;
        if (!grammar_is_end_of_sequence(&g->elements[alternative])) stack[d++] = alternative;
        grammar_expand(g, stack, d, out, seen);
        stack[depth - 1] = top;   // restore what the alternative overwrote
        while (!grammar_is_end_of_sequence(&g->elements[alternative])) alternative++;
        if (g->elements[alternative].type != G_ALT) break;
        alternative++;
    }
}

static void grammar_advance(const Grammar *g, int *stack, int depth, GrammarStacks *out, GrammarStacks *seen) {
    grammar_stacks_clear(seen);
    grammar_expand(g, stack, depth, out, seen);
}

// Does code point c match the character class at element index at? *next: the element after the class.
static int grammar_match_char(const Grammar *g, int at, uint32_t c, int *next) {
    const GrammarElement *e = &g->elements[at];
    int positive = e->type == G_CHAR || e->type == G_CHAR_ANY, found = 0;
    do {
        if (e[1].type == G_CHAR_RNG_UPPER) { found = found || (e->value <= c && c <= e[1].value); e += 2; }
        else if (e->type == G_CHAR_ANY) { found = 1; e += 1; }
        else { found = found || e->value == c; e += 1; }
    } while (e->type == G_CHAR_ALT);
    *next = (int)(e - g->elements);
    return found == positive;
}

// Could some character that the unfinished bytes start match the class at `at`?
static int grammar_match_partial(const Grammar *g, int at, PartialUtf8 partial) {
    const GrammarElement *e = &g->elements[at];
    int positive = e->type == G_CHAR || e->type == G_CHAR_ANY;
    if (partial.n_remain < 0 || (partial.n_remain == 1 && partial.value < 2)) return 0;
    uint32_t low = partial.value << (partial.n_remain * 6), high = low | ((1u << (partial.n_remain * 6)) - 1);
    if (low == 0) low = partial.n_remain == 2 ? 1u << 11 : partial.n_remain == 3 ? 1u << 16 : low;
    do {
        if (e[1].type == G_CHAR_RNG_UPPER) { if (e->value <= high && low <= e[1].value) return positive; e += 2; }
        else if (e->type == G_CHAR_ANY) return 1;
        else { if (low <= e->value && e->value <= high) return positive; e += 1; }
    } while (e->type == G_CHAR_ALT);
    return !positive;
}

// Every stack of in that accepts code point c, advanced, into out.
static void grammar_accept_char(const Grammar *g, const GrammarStacks *in, uint32_t c, GrammarStacks *out, int *scratch,
                                GrammarStacks *seen) {
    grammar_stacks_clear(out);
    for (int i = 0; i < in->n_stacks; i++) {
        int begin = stack_begin(in, i), depth = in->ends[i] - begin, next;
        if (depth == 0) continue;
        if (!grammar_match_char(g, in->items[in->ends[i] - 1], c, &next)) continue;
        memcpy(scratch, in->items + begin, (size_t)(depth - 1) * sizeof(int));
        int d = depth - 1;
        if (!grammar_is_end_of_sequence(&g->elements[next])) scratch[d++] = next;
        grammar_advance(g, scratch, d, out, seen);
    }
    if (in->overflow) out->overflow = 1;
}

// The start of a parse: root's alternatives, advanced.
static void grammar_start(const Grammar *g, GrammarState *state) {
    memset(state, 0, sizeof *state);
    int *stack = xcalloc(GRAMMAR_MAX_DEPTH + 2, sizeof(int), "grammar stack");
    GrammarStacks seen = { 0 };
    int alternative = g->rule_start[g->root];
    for (;;) {
        int depth = 0;
        if (!grammar_is_end_of_sequence(&g->elements[alternative])) stack[depth++] = alternative;
        grammar_advance(g, stack, depth, &state->stacks, &seen);
        while (!grammar_is_end_of_sequence(&g->elements[alternative])) alternative++;
        if (g->elements[alternative].type != G_ALT) break;
        alternative++;
    }
    grammar_stacks_free(&seen);
    free(stack);
}

static void grammar_state_free(GrammarState *s) { grammar_stacks_free(&s->stacks); }

// The parse is complete here: some stack is empty (the end of text may come now).
static int grammar_complete(const GrammarState *s) {
    if (s->partial.n_remain != 0) return 0;
    for (int i = 0; i < s->stacks.n_stacks; i++) if (s->stacks.ends[i] == stack_begin(&s->stacks, i)) return 1;
    return 0;
}

// Nothing but the end may follow: every stack is empty.
static int grammar_finished(const GrammarState *s) {
    return s->partial.n_remain == 0 && s->stacks.n_items == 0 && s->stacks.n_stacks > 0;
}

// Bytes into code points, continuing an unfinished character. Stricter than
// llama.cpp's decode_utf8: a sequence the Unicode standard calls ill-formed
// (an overlong form, a surrogate, a stray continuation byte, past U+10FFFF:
// runq.c's utf8_next) ends the parse, so a grammar's text is always
// well-formed UTF-8 and counts the characters a reader counts. Calls on_char
// for each whole code point; returns the partial state after (n_remain -1:
// refused).
typedef int (*GrammarCharFn)(void *context, uint32_t c);

static PartialUtf8 grammar_decode(const unsigned char *bytes, size_t n, PartialUtf8 partial, GrammarCharFn on_char, void *context) {
    static const PartialUtf8 refused = { 0, -1, { 0 }, 0 };
    if (partial.n_remain < 0) return refused;
    for (size_t i = 0; i < n; i++) {
        partial.bytes[partial.n_bytes++] = bytes[i];
        int step = utf8_next(partial.bytes, (size_t)partial.n_bytes);
        if (step < 0) return refused;
        if (step == 0) continue;   // a character's start: more bytes to come
        const unsigned char *u = partial.bytes;
        uint32_t c = step == 1 ? u[0] : step == 2 ? (u[0] & 0x1Fu) << 6 | (u[1] & 0x3Fu)
                   : step == 3 ? (u[0] & 0x0Fu) << 12 | (u[1] & 0x3Fu) << 6 | (u[2] & 0x3Fu)
                   : (u[0] & 0x07u) << 18 | (u[1] & 0x3Fu) << 12 | (u[2] & 0x3Fu) << 6 | (u[3] & 0x3Fu);
        partial.n_bytes = 0;
        if (!on_char(context, c)) return refused;
    }
    // what an unfinished character can still become (llama.cpp's value and n_remain)
    partial.value = 0;
    partial.n_remain = 0;
    if (partial.n_bytes > 0) {
        unsigned char lead = partial.bytes[0];
        int length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        partial.value = lead & (length == 4 ? 0x07u : length == 3 ? 0x0Fu : 0x1Fu);
        for (int k = 1; k < partial.n_bytes; k++) partial.value = partial.value << 6 | (partial.bytes[k] & 0x3Fu);
        partial.n_remain = length - partial.n_bytes;
    }
    return partial;
}

// ----------------------------------------------------------------------------
// Following text: a token's bytes tried against a state (the mask), or
// accepted into it (the token sampled). Two stack sets are swapped per code
// point; a scratch stack holds one stack being advanced.

typedef struct {
    const Grammar *grammar;
    GrammarStacks a, b;          // the current stacks and the next ones
    GrammarStacks *current;
    GrammarStacks seen;          // the stacks one expansion has met
    int *scratch;                // (GRAMMAR_MAX_DEPTH + 2,)
} GrammarWalk;

static void grammar_walk_init(GrammarWalk *w, const Grammar *g) {
    memset(w, 0, sizeof *w);
    w->grammar = g;
    w->scratch = xcalloc(GRAMMAR_MAX_DEPTH + 2, sizeof(int), "grammar stack");
}

static void grammar_walk_free(GrammarWalk *w) {
    grammar_stacks_free(&w->a);
    grammar_stacks_free(&w->b);
    grammar_stacks_free(&w->seen);
    free(w->scratch);
}

// A copy of a set (distinct already: no stack compared).
static void grammar_stacks_copy(GrammarStacks *to, const GrammarStacks *from) {
    if (from->n_items > to->items_capacity) {
        to->items_capacity = from->n_items + 64;
        to->items = realloc(to->items, (size_t)to->items_capacity * sizeof(int));
        if (!to->items) die("out of memory following a grammar");
    }
    if (from->n_stacks > to->stacks_capacity) {
        to->stacks_capacity = from->n_stacks + 16;
        to->ends = realloc(to->ends, (size_t)to->stacks_capacity * sizeof(int));
        if (!to->ends) die("out of memory following a grammar");
    }
    if (from->n_items) memcpy(to->items, from->items, (size_t)from->n_items * sizeof(int));
    if (from->n_stacks) memcpy(to->ends, from->ends, (size_t)from->n_stacks * sizeof(int));
    to->n_items = from->n_items;
    to->n_stacks = from->n_stacks;
    to->overflow = from->overflow;
}

static int grammar_walk_char(void *raw, uint32_t c) {
    GrammarWalk *w = raw;
    GrammarStacks *next = w->current == &w->a ? &w->b : &w->a;
    grammar_accept_char(w->grammar, w->current, c, next, w->scratch, &w->seen);
    w->current = next;
    return next->n_stacks > 0 && !next->overflow;
}

// Can bytes follow the text so far? (A token that ends inside a character
// passes when some stack could match a character those bytes begin.)
static int grammar_allows(GrammarWalk *w, const GrammarState *state, const unsigned char *bytes, size_t n) {
    if (n == 0 || state->stacks.overflow) return 0;
    // the first character must match a stack's top: most tokens fail here, before any copy
    if (state->partial.n_remain == 0 && bytes[0] < 0x80) {
        int any = 0, next;
        for (int i = 0; i < state->stacks.n_stacks && !any; i++) {
            int begin = stack_begin(&state->stacks, i);
            any = state->stacks.ends[i] > begin && grammar_match_char(w->grammar, state->stacks.items[state->stacks.ends[i] - 1], bytes[0], &next);
        }
        if (!any) return 0;
    }
    grammar_stacks_copy(&w->a, &state->stacks);
    w->current = &w->a;
    PartialUtf8 partial = grammar_decode(bytes, n, state->partial, grammar_walk_char, w);
    if (partial.n_remain < 0) return 0;
    if (partial.n_remain == 0) return w->current->n_stacks > 0;
    for (int i = 0; i < w->current->n_stacks; i++) {
        int begin = stack_begin(w->current, i);
        if (w->current->ends[i] > begin && grammar_match_partial(w->grammar, w->current->items[w->current->ends[i] - 1], partial))
            return 1;
    }
    return 0;
}

// The bytes taken into the state (they must be allowed); 0 if they are not.
static int grammar_accept(GrammarWalk *w, GrammarState *state, const unsigned char *bytes, size_t n) {
    grammar_stacks_copy(&w->a, &state->stacks);
    w->current = &w->a;
    PartialUtf8 partial = grammar_decode(bytes, n, state->partial, grammar_walk_char, w);
    if (partial.n_remain < 0 || w->current->n_stacks == 0) return 0;
    grammar_stacks_copy(&state->stacks, w->current);
    state->partial = partial;
    return 1;
}

// Does the whole of text parse? (Tests, and the server's check of a grammar's own output.)
static int grammar_matches(const Grammar *g, const char *text, size_t n) {
    GrammarState state;
    GrammarWalk walk;
    grammar_start(g, &state);
    grammar_walk_init(&walk, g);
    int ok = n == 0 || grammar_accept(&walk, &state, (const unsigned char *)text, n);
    ok = ok && grammar_complete(&state);
    grammar_walk_free(&walk);
    grammar_state_free(&state);
    return ok;
}

#pragma GCC diagnostic pop
#endif

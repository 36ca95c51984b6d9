/*
json_schema.h — a JSON Schema into a GBNF grammar (grammar.h) whose every
complete parse is a JSON text valid under the schema: what llama.cpp's
json-schema-to-grammar does, with the same rule shapes (numbers' exponents
bounded to two digits, so a number always fits a double) (objects with their
required properties first and the optional ones after, in order; a `space`
rule between tokens), so the server's `json_schema`, `response_format` and
tool calls share one path: schema -> grammar text -> parse_grammar.

What it is: types (object, array, string, number, integer, boolean, null,
and lists of them), properties, required, additionalProperties (absent or
false: none; true or a schema: any other key), items, prefixItems,
minItems/maxItems, minLength/maxLength, enum, const, anyOf/oneOf, string
formats date, time, date-time and uuid, and local $ref (#/$defs/..., and
#/definitions/...). What it is not: a validator; nor the keywords that bound
what it cannot express (pattern, minimum/maximum, multipleOf, allOf, not,
if/then/else, dependent schemas): a schema using one is refused with its
name, rather than given a grammar that would let invalid output through.

Include after: runq.c and json.h.
*/

#ifndef EDGE_JSON_SCHEMA_H
#define EDGE_JSON_SCHEMA_H
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // a program uses the parts it needs

#define SCHEMA_MAX_RULES 4096
#define SCHEMA_MAX_DEPTH 32

typedef struct SchemaConverter SchemaConverter;

// A growing NUL-terminated string, its buffer owned by the converter (slot):
// a failure deep in the conversion jumps out, and the converter frees it.
typedef struct {
    char *data;
    size_t length, capacity;
    SchemaConverter *owner;
    int slot;                     // the buffer's index among the owner's
} SchemaText;

struct SchemaConverter {
    const Json *root;             // the whole schema: where $ref points
    char *names[SCHEMA_MAX_RULES];
    char *bodies[SCHEMA_MAX_RULES];   // NULL: reserved for a $ref being converted
    int n_rules;
    const char *resolving[SCHEMA_MAX_DEPTH];   // $refs being converted (a recursive schema refers to its rule by name)
    int n_resolving, depth;
    void **owned;                 // every buffer of the conversion, freed at its end
    int n_owned, owned_capacity;
    char *error;
    size_t error_size;
    jmp_buf fail;
};

static int schema_own(SchemaConverter *c, void *p) {
    if (c->n_owned == c->owned_capacity) {
        c->owned_capacity = c->owned_capacity * 2 + 32;
        c->owned = realloc(c->owned, (size_t)c->owned_capacity * sizeof *c->owned);
        if (!c->owned) die("out of memory converting a JSON schema");
    }
    c->owned[c->n_owned] = p;
    return c->n_owned++;
}

static void *schema_calloc(SchemaConverter *c, size_t n, size_t size) {
    void *p = xcalloc(n ? n : 1, size, "schema");
    schema_own(c, p);
    return p;
}

static SchemaText *schema_new_text(SchemaConverter *c) {
    SchemaText *t = schema_calloc(c, 1, sizeof *t);
    t->owner = c;
    t->capacity = 128;
    t->data = xcalloc(t->capacity, 1, "schema text");
    t->slot = schema_own(c, t->data);
    return t;
}

static void schema_append(SchemaText *t, const char *s, size_t n) {
    if (t->length + n + 1 > t->capacity) {
        t->capacity = (t->length + n + 1) * 2 + 64;
        t->data = realloc(t->data, t->capacity);
        if (!t->data) die("out of memory converting a JSON schema");
        t->owner->owned[t->slot] = t->data;
    }
    memcpy(t->data + t->length, s, n);
    t->length += n;
    t->data[t->length] = '\0';
}

static void schema_puts(SchemaText *t, const char *s) { schema_append(t, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void schema_printf(SchemaText *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buffer = xcalloc((size_t)n + 1, 1, "schema text");
    va_start(ap, fmt);
    vsnprintf(buffer, (size_t)n + 1, fmt, ap);
    va_end(ap);
    schema_append(t, buffer, (size_t)n);
    free(buffer);
}

__attribute__((format(printf, 2, 3)))
static void schema_fail(SchemaConverter *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, c->error_size, fmt, ap);
    va_end(ap);
    longjmp(c->fail, 1);
}

static int schema_find_rule(const SchemaConverter *c, const char *name) {
    for (int i = 0; i < c->n_rules; i++) if (strcmp(c->names[i], name) == 0) return i;
    return -1;
}

static char *schema_strdup(const char *s) {
    char *copy = strdup(s);
    if (!copy) die("out of memory converting a JSON schema");
    return copy;
}

// Add `name ::= body` (name made a GBNF name); the same body under the same
// name is one rule, another body takes name1, name2, ...; returns the name used.
static const char *schema_add_rule(SchemaConverter *c, const char *name, const char *body) {
    char base[256], candidate[280];
    size_t n = 0;
    for (const char *s = name; *s && n + 1 < sizeof base; s++) base[n++] = isalnum((unsigned char)*s) ? *s : '-';
    base[n] = '\0';
    if (n == 0) snprintf(base, sizeof base, "root");
    snprintf(candidate, sizeof candidate, "%s", base);
    for (int suffix = 1;; suffix++) {
        int at = schema_find_rule(c, candidate);
        if (at < 0) break;
        if (c->bodies[at] && body && strcmp(c->bodies[at], body) == 0) return c->names[at];
        snprintf(candidate, sizeof candidate, "%s%d", base, suffix);
    }
    if (c->n_rules == SCHEMA_MAX_RULES) schema_fail(c, "json_schema: more than %d rules", SCHEMA_MAX_RULES);
    c->names[c->n_rules] = schema_strdup(candidate);
    c->bodies[c->n_rules] = body ? schema_strdup(body) : NULL;
    return c->names[c->n_rules++];
}

// The primitives, as llama.cpp writes them.
static const char *schema_primitive(SchemaConverter *c, const char *name) {
    static const struct { const char *name, *body, *deps[6]; } primitives[] = {
        { "boolean", "(\"true\" | \"false\")", { 0 } },
        { "decimal-part", "[0-9]{1,16}", { 0 } },
        { "integral-part", "[0] | [1-9] [0-9]{0,15}", { 0 } },
        // llama.cpp's, but an exponent of at most two digits: a longer one overflows a double (1e400 is no number to a reader)
        { "number", "(\"-\"? integral-part) (\".\" decimal-part)? ([eE] [-+]? [0-9]{1,2})?", { "integral-part", "decimal-part" } },
        { "integer", "(\"-\"? integral-part)", { "integral-part" } },
        { "value", "object | array | string | number | boolean | null", { "object", "array", "string", "number", "boolean", "null" } },
        { "object", "\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? space \"}\"", { "string", "value", "space" } },
        { "array", "\"[\" space ( value (\",\" space value)* )? space \"]\"", { "value", "space" } },
        { "uuid", "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{12} \"\\\"\"", { 0 } },
        { "char", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4})", { 0 } },
        { "string", "\"\\\"\" char* \"\\\"\"", { "char" } },
        { "null", "\"null\"", { 0 } },
        { "space", "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}", { 0 } },
        { "date", "[0-9]{4} \"-\" ( \"0\" [1-9] | \"1\" [0-2] ) \"-\" ( \"0\" [1-9] | [1-2] [0-9] | \"3\" [0-1] )", { 0 } },
        { "time", "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{3} )? ( \"Z\" | ( \"+\" | \"-\" ) ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )", { 0 } },
        { "date-time", "date \"T\" time", { "date", "time" } },
        { "date-string", "\"\\\"\" date \"\\\"\"", { "date" } },
        { "time-string", "\"\\\"\" time \"\\\"\"", { "time" } },
        { "date-time-string", "\"\\\"\" date-time \"\\\"\"", { "date-time" } },
    };
    for (size_t i = 0; i < sizeof primitives / sizeof primitives[0]; i++) {
        if (strcmp(primitives[i].name, name) != 0) continue;
        if (schema_find_rule(c, name) >= 0) return name;
        const char *added = schema_add_rule(c, name, primitives[i].body);
        for (int d = 0; d < 6 && primitives[i].deps[d]; d++) schema_primitive(c, primitives[i].deps[d]);
        return added;
    }
    schema_fail(c, "json_schema: internal: no primitive %s", name);
    return NULL;
}

// A GBNF literal matching exactly the bytes of s.
static void schema_literal(SchemaText *out, const char *s, size_t n) {
    schema_puts(out, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') { char e[3] = { '\\', (char)ch, 0 }; schema_puts(out, e); }
        else if (ch == '\n') schema_puts(out, "\\n");
        else if (ch == '\r') schema_puts(out, "\\r");
        else if (ch < 0x20 || ch == 0x7F) schema_printf(out, "\\x%02X", ch);
        else schema_append(out, (const char *)&ch, 1);
    }
    schema_puts(out, "\"");
}

// A JSON value as compact JSON text (the one spelling the grammar allows for a const or an enum member).
static void schema_dump(SchemaText *out, const Json *v) {
    switch (v->type) {
    case JSON_NULL: schema_puts(out, "null"); break;
    case JSON_TRUE: schema_puts(out, "true"); break;
    case JSON_FALSE: schema_puts(out, "false"); break;
    case JSON_NUMBER: {
        char number[40];
        for (int precision = 1; precision <= 17; precision++) {   // the shortest form that reads back the same
            snprintf(number, sizeof number, "%.*g", precision, v->number);
            if (strtod(number, NULL) == v->number) break;
        }
        schema_puts(out, number);
        break;
    }
    case JSON_STRING:
        schema_puts(out, "\"");
        for (size_t i = 0; i < v->length; i++) {
            unsigned char ch = (unsigned char)v->string[i];
            if (ch == '"' || ch == '\\') { char e[3] = { '\\', (char)ch, 0 }; schema_puts(out, e); }
            else if (ch == '\n') schema_puts(out, "\\n");
            else if (ch == '\r') schema_puts(out, "\\r");
            else if (ch == '\t') schema_puts(out, "\\t");
            else if (ch == '\b') schema_puts(out, "\\b");
            else if (ch == '\f') schema_puts(out, "\\f");
            else if (ch < 0x20) schema_printf(out, "\\u%04x", ch);
            else schema_append(out, (const char *)&ch, 1);
        }
        schema_puts(out, "\"");
        break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        schema_puts(out, v->type == JSON_ARRAY ? "[" : "{");
        for (int i = 0; i < v->count; i++) {
            if (i) schema_puts(out, ",");
            if (v->type == JSON_OBJECT) {
                Json key = { .type = JSON_STRING, .string = v->keys[i], .length = strlen(v->keys[i]) };
                schema_dump(out, &key);
                schema_puts(out, ":");
            }
            schema_dump(out, &v->items[i]);
        }
        schema_puts(out, v->type == JSON_ARRAY ? "]" : "}");
        break;
    }
}

static void schema_constant(SchemaText *out, const Json *v) {
    SchemaConverter *c = out->owner;
    SchemaText *json = schema_new_text(c);
    schema_puts(json, "");
    schema_dump(json, v);
    schema_literal(out, json->data, json->length);
}

// S repeated min..max times (max < 0: no maximum), separated by sep: llama.cpp's build_repetition.
static void schema_repetition(SchemaText *out, const char *item, int min, int max, const char *sep) {
    SchemaConverter *c = out->owner;
    if (max == 0) return;
    if (min == 0 && max == 1) { schema_printf(out, "%s?", item); return; }
    if (!sep) {
        if (max < 0) schema_printf(out, min == 0 ? "%s*" : min == 1 ? "%s+" : "%s{%d,}", item, min);
        else schema_printf(out, "%s{%d,%d}", item, min, max);
        return;
    }
    SchemaText *rest = schema_new_text(c), *repeated = schema_new_text(c);
    schema_printf(repeated, "(%s %s)", sep, item);
    schema_puts(rest, "");
    schema_repetition(rest, repeated->data, min == 0 ? 0 : min - 1, max < 0 ? -1 : max - 1, NULL);
    if (min == 0) schema_printf(out, "(%s %s)?", item, rest->data);
    else schema_printf(out, "%s %s", item, rest->data);
}

static const char *schema_visit(SchemaConverter *c, const Json *schema, const char *name);

static int schema_int(SchemaConverter *c, const Json *schema, const char *key, int fallback) {
    const Json *v = json_get(schema, key);
    if (!v) return fallback;
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < 0 || v->number > 100000)
        schema_fail(c, "json_schema: '%s' must be a whole number in [0, 100000]", key);
    return (int)v->number;
}

static void schema_name(char *out, size_t size, const char *name, const char *suffix) {
    snprintf(out, size, "%s%s%s", name, name[0] ? "-" : "", suffix);
}

static int schema_is_required(const Json *required, const char *key) {
    for (int i = 0; required && required->type == JSON_ARRAY && i < required->count; i++)
        if (required->items[i].type == JSON_STRING && strcmp(required->items[i].string, key) == 0) return 1;
    return 0;
}

// {"properties":..., "required":[...], "additionalProperties":...}: the
// required properties in their order, then the optional ones, each optional
// one followed by any of those after it (llama.cpp's _build_object_rule).
static const char *schema_object(SchemaConverter *c, const Json *schema, const char *name, const char *rule_name) {
    const Json *properties = json_get(schema, "properties"), *required = json_get(schema, "required");
    const Json *additional = json_get(schema, "additionalProperties");
    if (properties && properties->type != JSON_OBJECT) schema_fail(c, "json_schema: 'properties' must be an object");
    if (required && required->type != JSON_ARRAY) schema_fail(c, "json_schema: 'required' must be an array");
    int n = properties ? properties->count : 0;
    const char **kv = schema_calloc(c, (size_t)n + 1, sizeof *kv);
    int *is_required = schema_calloc(c, (size_t)n + 1, sizeof(int));
    char sub[300];
    for (int i = 0; i < n; i++) {
        schema_name(sub, sizeof sub, name, properties->keys[i]);
        const char *value_rule = schema_visit(c, &properties->items[i], sub);
        SchemaText *body = schema_new_text(c);
        Json key = { .type = JSON_STRING, .string = properties->keys[i], .length = strlen(properties->keys[i]) };
        schema_constant(body, &key);
        schema_printf(body, " space \":\" space %s", value_rule);
        char kv_name[320];
        snprintf(kv_name, sizeof kv_name, "%s-kv", sub);
        kv[i] = schema_add_rule(c, kv_name, body->data);
        is_required[i] = schema_is_required(required, properties->keys[i]);
    }
    for (int i = 0; required && i < required->count; i++)
        if (required->items[i].type != JSON_STRING || !json_get(properties, required->items[i].string))
            schema_fail(c, "json_schema: required property %s is not among the properties", required->items[i].type == JSON_STRING
                        ? required->items[i].string : "(not a string)");
    // another key: any string not one of the properties' names is beyond this converter; a string key then
    int n_optional_extra = 0;
    if (additional && additional->type != JSON_FALSE) {
        if (n > 0) schema_fail(c, "json_schema: additionalProperties beside properties is not supported (set it to false)");
        schema_name(sub, sizeof sub, name, "additional-value");
        const char *value_rule = additional->type == JSON_TRUE ? schema_primitive(c, "value") : schema_visit(c, additional, sub);
        SchemaText *body = schema_new_text(c);
        schema_printf(body, "%s \":\" space %s", schema_primitive(c, "string"), value_rule);
        schema_name(sub, sizeof sub, name, "additional-kv");
        kv[n] = schema_add_rule(c, sub, body->data);
        n_optional_extra = 1;
    }
    SchemaText *rule = schema_new_text(c);
    schema_puts(rule, "\"{\" space ");
    int n_required = 0;
    for (int i = 0; i < n; i++) if (is_required[i]) schema_printf(rule, "%s%s", n_required++ ? " \",\" space " : "", kv[i]);
    // the optional keys, in order: any subset, comma-separated
    int optional[SCHEMA_MAX_RULES], n_optional = 0;
    for (int i = 0; i < n && n_optional < SCHEMA_MAX_RULES; i++) if (!is_required[i]) optional[n_optional++] = i;
    if (n_optional_extra) optional[n_optional++] = n;
    if (n_optional > 0) {
        schema_puts(rule, n_required ? " ( \",\" space ( " : " ( ");
        // rest[k]: the optional keys from k on, each preceded by a comma, each optional
        const char **rest = schema_calloc(c, (size_t)n_optional + 1, sizeof *rest);
        for (int k = n_optional - 1; k >= 1; k--) {
            int key = optional[k];
            SchemaText *body = schema_new_text(c);
            if (key == n) schema_printf(body, "( \",\" space %s )*", kv[key]);
            else schema_printf(body, "( \",\" space %s )?", kv[key]);
            if (rest[k + 1]) schema_printf(body, " %s", rest[k + 1]);
            char rest_name[320];
            snprintf(rest_name, sizeof rest_name, "%s%s%s-rest", name, name[0] ? "-" : "", key == n ? "additional" : properties->keys[key]);
            rest[k] = schema_add_rule(c, rest_name, body->data);
        }
        for (int k = 0; k < n_optional; k++) {
            int key = optional[k];
            if (k) schema_puts(rule, " | ");
            if (key == n) schema_printf(rule, "%s ( \",\" space %s )*", kv[key], kv[key]);
            else schema_puts(rule, kv[key]);
            if (rest[k + 1]) schema_printf(rule, " %s", rest[k + 1]);
        }
        schema_puts(rule, n_required ? " ) )?" : " )?");
    }
    schema_puts(rule, " space \"}\"");
    const char *added = schema_add_rule(c, rule_name, rule->data);
    return added;
}

static const char *schema_array(SchemaConverter *c, const Json *schema, const char *name, const char *rule_name) {
    const Json *items = json_get(schema, "items"), *prefix = json_get(schema, "prefixItems");
    char sub[300];
    SchemaText *rule = schema_new_text(c);
    if (prefix || (items && items->type == JSON_ARRAY)) {   // a tuple
        const Json *list = prefix ? prefix : items;
        if (list->type != JSON_ARRAY) schema_fail(c, "json_schema: 'prefixItems' must be an array");
        schema_puts(rule, "\"[\" space ");
        for (int i = 0; i < list->count; i++) {
            char suffix[40];
            snprintf(suffix, sizeof suffix, "tuple-%d", i);
            schema_name(sub, sizeof sub, name, suffix);
            schema_printf(rule, "%s%s", i ? " \",\" space " : "", schema_visit(c, &list->items[i], sub));
        }
        schema_puts(rule, " space \"]\"");
    } else {
        schema_name(sub, sizeof sub, name, "item");
        const char *item = items ? schema_visit(c, items, sub) : schema_primitive(c, "value");
        int min = schema_int(c, schema, "minItems", 0), max = schema_int(c, schema, "maxItems", -1);
        if (max >= 0 && max < min) schema_fail(c, "json_schema: maxItems is below minItems");
        schema_puts(rule, "\"[\" space ");
        schema_repetition(rule, item, min, max, "\",\" space");
        schema_puts(rule, " space \"]\"");
    }
    const char *added = schema_add_rule(c, rule_name, rule->data);
    return added;
}

static const char *schema_string(SchemaConverter *c, const Json *schema, const char *rule_name) {
    const Json *format = json_get(schema, "format");
    if (format && format->type == JSON_STRING) {
        if (strcmp(format->string, "uuid") == 0) return schema_add_rule(c, rule_name, schema_primitive(c, "uuid"));
        const char *prim = strcmp(format->string, "date") == 0 ? "date-string" : strcmp(format->string, "time") == 0 ? "time-string"
                         : strcmp(format->string, "date-time") == 0 ? "date-time-string" : NULL;
        if (prim) return schema_add_rule(c, rule_name, schema_primitive(c, prim));
        // other formats (email, uri, ...) constrain nothing the grammar can say: any string, as llama.cpp does
    }
    int min = schema_int(c, schema, "minLength", 0), max = schema_int(c, schema, "maxLength", -1);
    if (min == 0 && max < 0) return schema_add_rule(c, rule_name, schema_primitive(c, "string"));
    if (max >= 0 && max < min) schema_fail(c, "json_schema: maxLength is below minLength");
    SchemaText *rule = schema_new_text(c);
    schema_puts(rule, "\"\\\"\" ");
    schema_repetition(rule, schema_primitive(c, "char"), min, max, NULL);
    schema_puts(rule, " \"\\\"\"");
    const char *added = schema_add_rule(c, rule_name, rule->data);
    return added;
}

// "#/$defs/name" or "#/definitions/name" (or any JSON pointer into the schema itself).
static const char *schema_ref(SchemaConverter *c, const char *ref, const char *rule_name) {
    if (ref[0] != '#') schema_fail(c, "json_schema: only local $ref (#/...) is supported, not %.80s", ref);
    char name[300] = "ref";
    size_t n = 3;
    for (const char *s = ref + 1; *s && n + 1 < sizeof name; s++) name[n++] = isalnum((unsigned char)*s) ? *s : '-';
    name[n] = '\0';
    for (int i = 0; i < c->n_resolving; i++)
        if (strcmp(c->resolving[i], ref) == 0) return schema_add_rule(c, rule_name, name);   // recursion: by name
    int known = schema_find_rule(c, name);
    if (known < 0) {
        const Json *target = c->root;
        char part[256];
        for (const char *s = ref + 1; *s == '/';) {
            s++;
            size_t k = 0;
            while (*s && *s != '/' && k + 1 < sizeof part) {
                if (s[0] == '~' && (s[1] == '0' || s[1] == '1')) { part[k++] = s[1] == '0' ? '~' : '/'; s += 2; }
                else part[k++] = *s++;
            }
            part[k] = '\0';
            target = json_get(target, part);
            if (!target) schema_fail(c, "json_schema: $ref %.80s points nowhere", ref);
        }
        if (c->n_resolving == SCHEMA_MAX_DEPTH) schema_fail(c, "json_schema: $ref nested too deeply");
        c->resolving[c->n_resolving++] = ref;
        schema_visit(c, target, name);
        c->n_resolving--;
    }
    return schema_add_rule(c, rule_name, name);
}

static const char *schema_alternatives(SchemaConverter *c, const Json *list, const char *name, const char *rule_name) {
    if (list->type != JSON_ARRAY || list->count == 0) schema_fail(c, "json_schema: anyOf/oneOf must be a non-empty array");
    SchemaText *rule = schema_new_text(c);
    char sub[300];
    for (int i = 0; i < list->count; i++) {
        char suffix[40];
        snprintf(suffix, sizeof suffix, "%d", i);
        schema_name(sub, sizeof sub, name[0] ? name : "alternative", suffix);
        schema_printf(rule, "%s%s", i ? " | " : "", schema_visit(c, &list->items[i], sub));
    }
    const char *added = schema_add_rule(c, rule_name, rule->data);
    return added;
}

static const char *schema_type(SchemaConverter *c, const Json *schema, const char *type, const char *name, const char *rule_name) {
    if (strcmp(type, "object") == 0) return schema_object(c, schema, name, rule_name);
    if (strcmp(type, "array") == 0) return schema_array(c, schema, name, rule_name);
    if (strcmp(type, "string") == 0) return schema_string(c, schema, rule_name);
    if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0 || strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0)
        return schema_add_rule(c, rule_name, schema_primitive(c, type));
    schema_fail(c, "json_schema: unknown type '%.40s'", type);
    return NULL;
}

// One schema into a rule (named after where it is: root, root-name, root-name-item, ...).
static const char *schema_visit(SchemaConverter *c, const Json *schema, const char *name) {
    if (++c->depth > SCHEMA_MAX_DEPTH) schema_fail(c, "json_schema: nested deeper than %d", SCHEMA_MAX_DEPTH);
    const char *rule_name = name[0] ? name : "root";
    const char *result;
    if (schema->type == JSON_TRUE) { result = schema_add_rule(c, rule_name, schema_primitive(c, "value")); c->depth--; return result; }
    if (schema->type != JSON_OBJECT) schema_fail(c, "json_schema: a schema must be an object or true");
    static const char *const refused[] = { "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                           "multipleOf", "allOf", "not", "if", "then", "else", "dependentRequired",
                                           "dependentSchemas", "patternProperties", "propertyNames", "uniqueItems",
                                           "contains", "minProperties", "maxProperties" };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (json_get(schema, refused[i])) schema_fail(c, "json_schema: '%s' is not supported", refused[i]);
    const Json *ref = json_get(schema, "$ref"), *constant = json_get(schema, "const"), *enumeration = json_get(schema, "enum");
    const Json *any_of = json_get(schema, "anyOf") ? json_get(schema, "anyOf") : json_get(schema, "oneOf");
    const Json *type = json_get(schema, "type");
    if (ref && ref->type == JSON_STRING) {
        result = schema_ref(c, ref->string, rule_name);
    } else if (constant) {
        SchemaText *rule = schema_new_text(c);
        schema_constant(rule, constant);
        result = schema_add_rule(c, rule_name, rule->data);
    } else if (enumeration) {
        if (enumeration->type != JSON_ARRAY || enumeration->count == 0) schema_fail(c, "json_schema: 'enum' must be a non-empty array");
        SchemaText *rule = schema_new_text(c);
        schema_puts(rule, "(");
        for (int i = 0; i < enumeration->count; i++) {
            if (i) schema_puts(rule, " | ");
            schema_constant(rule, &enumeration->items[i]);
        }
        schema_puts(rule, ")");
        result = schema_add_rule(c, rule_name, rule->data);
    } else if (any_of) {
        result = schema_alternatives(c, any_of, name, rule_name);
    } else if (type && type->type == JSON_ARRAY) {
        SchemaText *rule = schema_new_text(c);
        char sub[300];
        for (int i = 0; i < type->count; i++) {
            if (type->items[i].type != JSON_STRING) schema_fail(c, "json_schema: 'type' entries must be strings");
            schema_name(sub, sizeof sub, name[0] ? name : "root", type->items[i].string);
            schema_printf(rule, "%s%s", i ? " | " : "", schema_type(c, schema, type->items[i].string, name, sub));
        }
        if (type->count == 0) schema_fail(c, "json_schema: 'type' must not be empty");
        result = schema_add_rule(c, rule_name, rule->data);
    } else if (type) {
        if (type->type != JSON_STRING) schema_fail(c, "json_schema: 'type' must be a string or an array of strings");
        result = schema_type(c, schema, type->string, name, rule_name);
    } else if (json_get(schema, "properties")) {
        result = schema_object(c, schema, name, rule_name);
    } else if (json_get(schema, "items") || json_get(schema, "prefixItems")) {
        result = schema_array(c, schema, name, rule_name);
    } else {
        result = schema_add_rule(c, rule_name, schema_primitive(c, "value"));
    }
    c->depth--;
    return result;
}

static void schema_converter_free(SchemaConverter *c) {
    for (int i = 0; i < c->n_rules; i++) { free(c->names[i]); free(c->bodies[i]); }
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
}

// The grammar text for n schemas (malloc'd), or NULL and a message in error.
// names[i]: schema i's rule (NULL: root); extra: rules the caller adds, which
// may refer to those names and to `space` (a tool call wrapping its
// arguments' schemas), or NULL. One converter for all, so the rules they
// share (string, space, ...) are written once.
static char *json_schemas_to_grammar(const Json *const *schemas, const char *const *names, int n, const char *extra,
                                     char *error, size_t error_size) {
    SchemaConverter *c = xcalloc(1, sizeof *c, "schema converter");
    c->error = error;
    c->error_size = error_size;
    char *grammar = NULL;
    if (setjmp(c->fail) == 0) {
        schema_primitive(c, "space");   // every grammar has it: a wrapping caller may use it too
        for (int i = 0; i < n; i++) {
            c->root = schemas[i];
            schema_visit(c, schemas[i], names[i] ? names[i] : "");
        }
        SchemaText *out = schema_new_text(c);
        for (int i = 0; i < c->n_rules; i++) {
            schema_printf(out, "%s ::= ", c->names[i]);
            schema_puts(out, c->bodies[i]);
            schema_puts(out, "\n");
        }
        if (extra) schema_puts(out, extra);
        grammar = schema_strdup(out->data);
    }
    schema_converter_free(c);
    free(c);
    return grammar;
}

static char *json_schema_to_grammar(const Json *schema, const char *root_name, char *error, size_t error_size) {
    return json_schemas_to_grammar(&schema, &root_name, 1, NULL, error, error_size);
}

#pragma GCC diagnostic pop
#endif

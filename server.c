/*
server.c — an HTTP server for one Edge LLM checkpoint: llama.cpp's server
API (/completion, /props, /slots, /metrics, /apply-template, /embedding,
/tokenize, /detokenize, /health) and the OpenAI API (/v1/completions,
/v1/chat/completions with tools and structured output, /v1/embeddings,
/v1/models), plus a chat page at /.

    server model.q4.bin [--host 127.0.0.1] [--port 8080] [--api-key KEY]
                        [-T threads] [-z tokenizer.bin] [--ctx N] [--parallel N] [--queue N]
                        [--cors-origin ORIGIN] [--max-conn-per-address N]

It is runq.c's runtime, json.h's parser, grammar.h and json_schema.h for
constrained output, sampling.h for the sampler chain, chat_page.h for the
page: POSIX sockets and pthreads, no other library.

How a request flows: the main thread accepts a connection (at most
--max-conn-per-address open from one address) and hands it to a connection
thread, which reads the request (the head within a short deadline), parses
the fields it knows (the others are checked and skipped, never built),
renders and tokenizes the prompt and compiles its grammar, then puts a job
on a bounded FIFO queue and waits. One worker thread owns the model and its
slots (--parallel N, each a KV cache of --ctx positions and the tokens it
holds). A job takes the idle slot whose cache shares the longest prefix with
its prompt, reuses that prefix, and waits for the steps: each step is one
forward pass holding the next token of every decoding slot and, in what room
is left of the batch, chunks of prompts (continuous batching: the weights
are read once per step for every stream, and a new prompt stalls running
streams by at most one chunk). After the pass each slot samples its token
and writes its answer (or its events) to its job's socket. A client that
leaves is noticed between chunks and tokens and frees its slot; one that
only half-closed its socket still gets its answer. Every response closes
its connection (Connection: close).

Each choice's state (its sampler, grammar, tokens and text) is apart from
the slot that feeds it, and every sequence's arithmetic is the same whatever
shares its batch (runq.c's forward_rows), so a request's text does not
depend on what else runs.

What it is not: a scheduler across machines or priorities (first come,
first served), TLS, HTTP/2, or keep-alive.
*/

#ifndef FUZZING        // test/fuzz/fuzz_http.c has included runq.c already, and has its own main
#define PROGRAM_NAME "server"
#define TESTING          // runq.c without its main
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // the server uses part of the runtime
#include "runq.c"
#pragma GCC diagnostic pop
#endif
#include "json.h"
#include "grammar.h"
#include "json_schema.h"
#include "sampling.h"
#include "chat_page.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#define MAX_HEADER_BYTES 16384     // request line and headers
#define MAX_HEADERS 64
#define MAX_BODY_BYTES (1 << 20)
#define MAX_CONNECTIONS 64         // connection threads at once; more are answered 503 at once
#define MAX_STOP_WORDS 16
#define MAX_STOP_WORD_BYTES 256
#define MAX_CHOICES 8              // n
#define MAX_SLOTS 16               // --parallel (a step's rows and logits hold one per slot: at most MAX_BATCH)
#define MAX_TOP_LOGPROBS 20
#define MAX_TOOLS 64
#define MAX_TOOL_CALLS 8
#define HEAD_TIMEOUT_MS 3000       // the request line and headers must arrive within this

// Set by SIGINT/SIGTERM: the one global, because a signal handler can reach nothing else.
static volatile sig_atomic_t stop_requested = 0;

static void request_stop(int signal_number) { (void)signal_number; stop_requested = 1; }

// ----------------------------------------------------------------------------
// Text: a growing byte buffer, always NUL-terminated, and JSON written into it

typedef struct {
    char *data;
    size_t length, capacity;
} Text;

static void text_append(Text *t, const char *s, size_t n) {
    if (t->length + n + 1 > t->capacity) {
        t->capacity = (t->length + n + 1) * 2 + 256;
        t->data = realloc(t->data, t->capacity);
        if (!t->data) die("out of memory building a response");
    }
    if (n) memcpy(t->data + t->length, s, n);
    t->length += n;
    t->data[t->length] = '\0';
}

static void text_puts(Text *t, const char *s) { text_append(t, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void text_printf(Text *t, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < (int)sizeof small) { text_append(t, small, (size_t)n); return; }
    char *big = xcalloc((size_t)n + 1, 1, "response text");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    text_append(t, big, (size_t)n);
    free(big);
}

static void text_free(Text *t) { free(t->data); memset(t, 0, sizeof *t); }

// An empty text that owns a buffer (so .data is a string at once).
static Text text_new(void) { Text t = { 0 }; text_append(&t, "", 0); return t; }

// A JSON string literal. Model text may hold ill-formed UTF-8 (a byte-fallback
// token alone, an overlong form, a surrogate, a character cut at the end):
// each maximal subpart becomes U+FFFD (runq.c's utf8_next decides), so every
// response is well-formed UTF-8 and valid JSON.
static void text_json_string(Text *t, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    text_puts(t, "\"");
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') { char e[2] = { '\\', (char)c }; text_append(t, e, 2); i++; }
        else if (c == '\n') { text_puts(t, "\\n"); i++; }
        else if (c == '\r') { text_puts(t, "\\r"); i++; }
        else if (c == '\t') { text_puts(t, "\\t"); i++; }
        else if (c < 0x20 || c == 0x7F) { text_printf(t, "\\u%04x", c); i++; }
        else {
            int step = utf8_next(u + i, n - i);
            if (step > 0) text_append(t, s + i, (size_t)step);
            else text_puts(t, "\\ufffd");
            i += step > 0 ? (size_t)step : step < 0 ? (size_t)-step : n - i;
        }
    }
    text_puts(t, "\"");
}

static void text_json_cstring(Text *t, const char *s) { text_json_string(t, s, strlen(s)); }

// A parsed JSON value written back as compact JSON (a tool's schema into a prompt, a call's arguments).
static void text_json_value(Text *t, const Json *v) {
    switch (v->type) {
    case JSON_NULL: text_puts(t, "null"); break;
    case JSON_TRUE: text_puts(t, "true"); break;
    case JSON_FALSE: text_puts(t, "false"); break;
    case JSON_NUMBER: {
        char number[40];
        for (int precision = 1; precision <= 17; precision++) {   // the shortest form that reads back the same
            snprintf(number, sizeof number, "%.*g", precision, v->number);
            if (strtod(number, NULL) == v->number) break;
        }
        text_puts(t, number);
        break;
    }
    case JSON_STRING: text_json_string(t, v->string, v->length); break;
    case JSON_ARRAY:
    case JSON_OBJECT:
        text_puts(t, v->type == JSON_ARRAY ? "[" : "{");
        for (int i = 0; i < v->count; i++) {
            if (i) text_puts(t, v->type == JSON_ARRAY ? ", " : ", ");
            if (v->type == JSON_OBJECT) { text_json_cstring(t, v->keys[i]); text_puts(t, ": "); }
            text_json_value(t, &v->items[i]);
        }
        text_puts(t, v->type == JSON_ARRAY ? "]" : "}");
        break;
    }
}

// ----------------------------------------------------------------------------
// The server: settings, the model, the slots, the queue, the counters

typedef struct {
    const char *model_path;
    const char *host;
    int port;
    const char *api_key;          // NULL: no authentication
    int n_threads;
    const char *tokenizer_path;   // NULL: the checkpoint's own
    const char *chat_template;    // --chat-template: NULL, the checkpoint's
    int context;                  // KV cache positions: prompt + reply of one request
    int kv_type;                  // KvType (-k)
    int queue_capacity;           // jobs waiting behind the running one
    int timeout_ms;               // to read a request body, and for each write to a client
    int head_timeout_ms;          // to read the request line and headers
    int max_per_address;          // connections open at once from one client address
    const char *cors_origin;      // Access-Control-Allow-Origin; NULL: no CORS headers
    int token_delay_ms;           // tests only: a pause after each forward pass, as on a slow board
    int parallel;                 // slots (--parallel); 0: as many as the memory plan fits, at most 4
} Settings;

// What a token's piece is when it is text: its bytes, and whether it is a
// control token (BOS, <|eot_id|>, ...) that is no text at all.
typedef struct {
    const char *bytes;
    int length;
    int control;
} TokenText;

// How this model's family writes a tool call (its chat template's convention).
enum ToolFormat { TOOLS_GENERIC, TOOLS_LLAMA3, TOOLS_HERMES, TOOLS_MISTRAL };

// A slot: a KV cache and the job it runs (defined with the worker, below).
typedef struct Slot Slot;

// Counters for /metrics (under the server's lock).
typedef struct {
    unsigned long requests, requests_failed;
    unsigned long prompt_tokens, prompt_tokens_cached, predicted_tokens;
    double prompt_ms, predicted_ms;
    unsigned long context_shifts;
} Metrics;

typedef struct Job Job;

typedef struct {
    Settings settings;
    Transformer transformer;      // the worker's alone
    Tokenizer tokenizer;          // read-only: shared by every thread
    const ChatTemplate *chat_template;
    int has_chat_template;        // recorded in the checkpoint or named by its vocabulary, not the llama2 guess
    int end_of_turn;              // the chat template's end-of-reply token
    int tool_format;              // ToolFormat
    int tool_calls_token;         // Mistral's [TOOL_CALLS], -1 if none
    TokenText *token_texts;       // (vocab_size,)
    char model_name[256];         // the checkpoint's file name, as /v1/models lists it
    long started;                 // unix time: "created" of the model

    pthread_mutex_t lock;         // guards everything below
    pthread_cond_t changed;       // a job queued or finished, a connection ended, shutting down
    Job *queue_head, *queue_tail;
    int queued;
    int connections;              // connection threads running
    struct { uint32_t address; int open; } per_address[MAX_CONNECTIONS];   // open connections by client address
    int shutting_down;
    unsigned long next_id;        // for response ids
    Slot *slots;                  // (n_slots,) the worker runs their jobs; busy and the counts are read under the lock
    int n_slots;
    unsigned long admissions;     // jobs given a slot so far (a slot's last_used)
    Metrics metrics;
} Server;

// ----------------------------------------------------------------------------
// HTTP: reading a request. Every failure is an HTTP status to answer with.

typedef struct {
    char head[MAX_HEADER_BYTES + 1];   // request line and headers, NUL-terminated
    size_t head_length;                // bytes received into head (may run into the body)
    size_t body_start;                 // offset of the body in head
    char *method, *target, *path;      // into head; path is target without its query
    const char *authorization;         // header value or NULL
    const char *origin;                // Origin header or NULL (CORS)
    long content_length;               // -1: none given
    int expect_continue;
    int chunked;
    char *body;                        // content_length bytes, NUL-terminated
    int body_unread;                   // the client may still be sending: drain before closing
} Request;

typedef struct {
    int status;                        // 0: no error; NO_REQUEST: the client left without asking
    const char *message;
} HttpError;

#define NO_REQUEST 1

static const char *status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

// Wait until fd is readable or the deadline passes: 1 readable, 0 timed out.
static int wait_readable(int fd, double deadline_ms) {
    for (;;) {
        double left = deadline_ms - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = { fd, POLLIN, 0 };
        int r = poll(&p, 1, (int)left + 1);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return 0;
    }
}

// Receive into buf[0..capacity) before the deadline: bytes read, 0 at the
// client's end of stream, -1 on timeout or error.
static ssize_t receive(int fd, char *buf, size_t capacity, double deadline_ms) {
    if (!wait_readable(fd, deadline_ms)) return -1;
    ssize_t n;
    do n = recv(fd, buf, capacity, 0); while (n < 0 && errno == EINTR);
    return n;
}

// Where a request's bytes come from: a client's socket, or (fd -1) bytes in
// memory handed over at most chunk at a time, then the end of stream: the
// fuzz target test/fuzz/fuzz_http.c runs the same parser without a socket.
typedef struct {
    int fd;
    double head_deadline_ms;           // for the request line and headers: an idle or trickling client is let go soon
    double deadline_ms;                // for the whole request
    const char *bytes;                 // fd -1: what is left to receive
    size_t left, chunk;
} RequestSource;

static ssize_t receive_from(RequestSource *s, char *buf, size_t capacity, double deadline_ms) {
    if (s->fd >= 0) return receive(s->fd, buf, capacity, deadline_ms);
    size_t n = capacity < s->left ? capacity : s->left;
    if (n > s->chunk) n = s->chunk;
    memcpy(buf, s->bytes, n);
    s->bytes += n;
    s->left -= n;
    return (ssize_t)n;
}

// The end of the headers (the blank line) in the first n bytes, or NULL.
// Scanning starts a few bytes before from, the end of what was searched
// already: a client sending a byte at a time costs no quadratic time.
static char *headers_end(char *head, size_t from, size_t n, size_t *body_start) {
    for (size_t i = from > 3 ? from - 3 : 0; i + 1 < n; i++) {
        if (head[i] != '\n') continue;
        if (head[i + 1] == '\n') { *body_start = i + 2; return head + i; }
        if (i + 2 < n && head[i + 1] == '\r' && head[i + 2] == '\n') { *body_start = i + 3; return head + i; }
    }
    return NULL;
}

static int is_token_char(char c) {
    return isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c);
}

// "METHOD /target HTTP/1.x"
static HttpError parse_request_line(Request *r, char *line) {
    char *space1 = strchr(line, ' ');
    char *space2 = space1 ? strchr(space1 + 1, ' ') : NULL;
    if (!space1 || !space2 || space1 == line) return (HttpError){ 400, "malformed request line" };
    *space1 = *space2 = '\0';
    r->method = line;
    r->target = space1 + 1;
    for (char *c = r->method; *c; c++) if (!is_token_char(*c)) return (HttpError){ 400, "malformed method" };
    if (r->target[0] != '/') return (HttpError){ 400, "the target must be a path starting with /" };
    for (char *c = r->target; *c; c++) if ((unsigned char)*c <= ' ' || *c == 0x7F) return (HttpError){ 400, "malformed target" };
    const char *version = space2 + 1;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return (HttpError){ 400, "not HTTP/1.0 or HTTP/1.1" };
    r->path = r->target;
    char *query = strchr(r->target, '?');
    if (query) *query = '\0';   // no route takes a query
    return (HttpError){ 0, NULL };
}

static HttpError parse_header(Request *r, char *line) {
    char *colon = strchr(line, ':');
    if (!colon || colon == line) return (HttpError){ 400, "malformed header line" };
    *colon = '\0';
    for (char *c = line; *c; c++) if (!is_token_char(*c)) return (HttpError){ 400, "malformed header name" };
    char *value = colon + 1;
    while (*value == ' ' || *value == '\t') value++;
    size_t length = strlen(value);
    while (length > 0 && (value[length - 1] == ' ' || value[length - 1] == '\t')) value[--length] = '\0';

    if (strcasecmp(line, "Content-Length") == 0) {
        if (length == 0 || length > 12 || strspn(value, "0123456789") != length)
            return (HttpError){ 400, "malformed Content-Length" };
        long n = atol(value);
        if (r->content_length >= 0 && r->content_length != n) return (HttpError){ 400, "conflicting Content-Length headers" };
        r->content_length = n;
    } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
        r->chunked = 1;
    } else if (strcasecmp(line, "Expect") == 0) {
        r->expect_continue = strcasecmp(value, "100-continue") == 0;
    } else if (strcasecmp(line, "Authorization") == 0) {
        r->authorization = value;
    } else if (strcasecmp(line, "Origin") == 0) {
        r->origin = value;
    }
    return (HttpError){ 0, NULL };
}

// The request line and headers, split in place into lines.
static HttpError parse_head(Request *r, char *end) {
    *end = '\0';
    int n_headers = 0;
    char *line = r->head;
    for (int first = 1; line && line <= end; first = 0) {
        char *newline = strchr(line, '\n');
        if (newline) *newline = '\0';
        size_t length = strlen(line);
        if (length > 0 && line[length - 1] == '\r') line[--length] = '\0';
        if (first) {
            HttpError e = parse_request_line(r, line);
            if (e.status) return e;
        } else if (length > 0) {
            if (++n_headers > MAX_HEADERS) return (HttpError){ 431, "too many headers" };
            HttpError e = parse_header(r, line);
            if (e.status) return e;
        }
        line = newline ? newline + 1 : NULL;
    }
    if (r->chunked) return (HttpError){ 411, "chunked bodies are not supported: send Content-Length" };
    if (r->content_length > MAX_BODY_BYTES) return (HttpError){ 413, "the body is larger than 1 MB" };
    return (HttpError){ 0, NULL };
}

static int send_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t sent = send(fd, data, n, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return -1;   // the client is gone, or stopped reading past the timeout
        data += sent;
        n -= (size_t)sent;
    }
    return 0;
}

// The body: what came with the headers, then the rest before the deadline.
static HttpError read_body(RequestSource *s, Request *r) {
    size_t length = r->content_length > 0 ? (size_t)r->content_length : 0;
    r->body = xcalloc(length + 1, 1, "request body");
    size_t have = r->head_length - r->body_start;
    if (have > length) have = length;   // no pipelining: bytes past the body are dropped
    memcpy(r->body, r->head + r->body_start, have);
    if (have < length && r->expect_continue && s->fd >= 0) {
        const char *go_on = "HTTP/1.1 100 Continue\r\n\r\n";
        if (send_all(s->fd, go_on, strlen(go_on)) != 0) return (HttpError){ 400, "client gone" };
    }
    while (have < length) {
        ssize_t n = receive_from(s, r->body + have, length - have, s->deadline_ms);
        if (n < 0) return (HttpError){ 408, "timed out reading the body" };
        if (n == 0) return (HttpError){ 400, "the body ended before Content-Length bytes" };
        have += (size_t)n;
    }
    r->body_unread = 0;
    return (HttpError){ 0, NULL };
}

static HttpError read_request(RequestSource *s, Request *r) {
    r->content_length = -1;
    r->body_unread = 1;
    char *end = NULL;
    while (!end) {
        if (r->head_length == MAX_HEADER_BYTES) return (HttpError){ 431, "the headers are larger than 16 kB" };
        ssize_t n = receive_from(s, r->head + r->head_length, MAX_HEADER_BYTES - r->head_length, s->head_deadline_ms);
        if (n < 0) return (HttpError){ 408, "timed out reading the request" };
        if (n == 0 && r->head_length == 0) return (HttpError){ NO_REQUEST, NULL };   // an idle connection closed
        if (n == 0) return (HttpError){ 400, "the request ended inside its headers" };
        size_t searched = r->head_length;
        r->head_length += (size_t)n;
        r->head[r->head_length] = '\0';
        end = headers_end(r->head, searched, r->head_length, &r->body_start);
    }
    if (memchr(r->head, '\0', (size_t)(end - r->head))) return (HttpError){ 400, "NUL byte in the headers" };
    HttpError e = parse_head(r, end);
    if (e.status) return e;
    if (strcmp(r->method, "POST") == 0 && r->content_length < 0) return (HttpError){ 411, "POST needs Content-Length" };
    return read_body(s, r);
}

// ----------------------------------------------------------------------------
// HTTP: responses. Each one closes the connection. With --cors-origin, every
// response names the allowed origin (a browser page from elsewhere may call
// the API); a HEAD request gets the head alone.

typedef struct {
    int fd;
    const char *cors_origin;      // the Access-Control-Allow-Origin value, or NULL
    int head_only;                // HEAD: no body
} Reply;

static int send_head(const Reply *to, int status, const char *content_type, long content_length, const char *extra_headers) {
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, status_text(status), content_type);
    if (content_length >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %ld\r\n", content_length);
    else n += snprintf(head + n, sizeof head - (size_t)n, "Cache-Control: no-cache\r\n");
    if (to->cors_origin)
        n += snprintf(head + n, sizeof head - (size_t)n, "Access-Control-Allow-Origin: %.200s\r\nVary: Origin\r\n", to->cors_origin);
    snprintf(head + n, sizeof head - (size_t)n, "Connection: close\r\n%s\r\n", extra_headers ? extra_headers : "");
    return send_all(to->fd, head, strlen(head));
}

static int send_response(const Reply *to, int status, const char *content_type, const char *body, size_t length, const char *extra) {
    if (send_head(to, status, content_type, (long)length, extra) != 0) return -1;
    return to->head_only ? 0 : send_all(to->fd, body, length);
}

static int send_json(const Reply *to, int status, const Text *json) {
    return send_response(to, status, "application/json; charset=utf-8", json->data, json->length, NULL);
}

// The error body llama.cpp's server and OpenAI's API both send.
static void send_error(const Reply *to, int status, const char *message, const char *extra_headers) {
    Text body = text_new();
    const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                     : status == 503 ? "unavailable_error" : status >= 500 ? "server_error" : "invalid_request_error";
    text_printf(&body, "{\"error\":{\"code\":%d,\"type\":\"%s\",\"message\":", status, type);
    text_json_cstring(&body, message);
    text_puts(&body, "}}");
    send_response(to, status, "application/json; charset=utf-8", body.data, body.length, extra_headers);
    text_free(&body);
}

// Server-sent events: one "data: ..." line and a blank line per event.
static int send_event(int fd, const Text *json) {
    Text event = text_new();
    text_puts(&event, "data: ");
    text_append(&event, json->data, json->length);
    text_puts(&event, "\n\n");
    int result = send_all(fd, event.data, event.length);
    text_free(&event);
    return result;
}

// Close after the client has seen the response: shut our side, then read and
// drop what it still sends for a moment (a body we refused), since closing
// with unread bytes resets the connection and the client could lose the answer.
static void close_gracefully(int fd, int drain) {
    shutdown(fd, SHUT_WR);
    if (drain) {
        char sink[4096];
        double deadline = now_ms() + 1000;
        while (receive(fd, sink, sizeof sink, deadline) > 0) {}
    }
    close(fd);
}

// ----------------------------------------------------------------------------
// Request fields: the JSON of /completion, /v1/completions and
// /v1/chat/completions into one job description. Types are checked; unknown
// fields are skipped unbuilt (OpenAI clients send many); null counts as
// absent; a bad value is a 400 naming the field.

enum Api { API_LLAMA, API_COMPLETIONS, API_CHAT };
enum Reasoning { REASONING_NONE, REASONING_DEEPSEEK };   // leave <think> in content, or return it apart

// The fields any generation route reads; the rest of a body is never built.
static const char *const generation_fields[] = {
    "prompt", "messages", "n_predict", "max_tokens", "max_completion_tokens", "temperature", "top_k", "top_p", "min_p",
    "seed", "stop", "stream", "stream_options", "repeat_penalty", "repeat_last_n", "presence_penalty", "frequency_penalty",
    "logit_bias", "n", "ignore_eos", "samplers", "grammar", "json_schema", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "logprobs", "top_logprobs", "n_probs", "cache_prompt", "n_keep", "enable_thinking",
    "chat_template_kwargs", "reasoning_format", NULL };

typedef struct {
    char name[128];               // letters, digits, _ and - (the grammar spells it as it is)
} ToolSpec;

// A conversation as the chat route received it, kept so that turns can be
// dropped and the rest rendered again when it outgrows the context.
enum Role { ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

typedef struct {
    int role;
    char *content;                // text (empty when null)
    char *tool_calls;             // assistant: its calls as the family writes them; NULL: none
} RequestMessage;

typedef struct {
    char *system;                 // every system/developer message joined, tools' description after
    RequestMessage *messages;        // (count,) system messages left out
    int count;
    int enable_thinking;          // -1: the template's default
} Conversation;

typedef struct {
    int api;                      // Api: which response format
    int stream, include_usage;    // stream_options.include_usage: a last chunk with usage
    TokenList prompt;
    int n_prompt_given;           // prompt tokens before any turn was dropped to fit (usage reports the sent prompt)
    int max_tokens;               // -1: until the context is full
    int n_choices;                // n
    int ignore_eos;
    int cache_prompt;             // reuse the KV cache's common prefix (default on)
    int n_keep;                   // /completion: prompt tokens kept when the context fills (-1: all); 0 and no
                                  // n_keep given: no context shift, the reply ends at a full context
    int has_n_keep;
    SamplingParams sampling;
    unsigned long long seed;
    char *stop[MAX_STOP_WORDS];   // strings that end the reply (not included in it)
    int n_stop;
    Grammar grammar;              // constrained output (grammar, json_schema, response_format, tools)
    int has_grammar;
    int lazy_grammar;             // tools with tool_choice auto: the grammar starts at the family's trigger
    ToolSpec tools[MAX_TOOLS];
    int n_tools;
    int reasoning_format;         // Reasoning
    Conversation conversation;    // chat: what the prompt was rendered from
    int first_turn;               // chat: the message the rendered prompt starts at (earlier turns dropped)
} JobSpec;

typedef struct {
    char message[300];            // the reason a request is refused (400)
} FieldError;

__attribute__((format(printf, 2, 3)))
static int refuse(FieldError *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return 0;
}

static const Json *field(const Json *body, const char *key) {
    const Json *v = json_get(body, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static int field_number(const Json *body, const char *key, double min, double max, double *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_NUMBER || !isfinite(v->number) || v->number < min || v->number > max)
        return refuse(e, "'%s' must be a number in [%g, %g]", key, min, max);
    *out = v->number;
    return 1;
}

static int field_integer(const Json *body, const char *key, double min, double max, double *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < min || v->number > max)
        return refuse(e, "'%s' must be an integer in [%.0f, %.0f]", key, min, max);
    *out = v->number;
    return 1;
}

static int field_bool(const Json *body, const char *key, int *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE) return refuse(e, "'%s' must be true or false", key);
    *out = v->type == JSON_TRUE;
    return 1;
}

// "stop": a string or an array of strings (both APIs accept either)
static int field_stop(const Json *body, JobSpec *job, FieldError *e) {
    const Json *v = field(body, "stop");
    if (!v) return 1;
    int n = v->type == JSON_STRING ? 1 : v->type == JSON_ARRAY ? v->count : -1;
    if (n < 0 || n > MAX_STOP_WORDS) return refuse(e, "'stop' must be a string or an array of at most %d strings", MAX_STOP_WORDS);
    for (int i = 0; i < n; i++) {
        const Json *word = v->type == JSON_STRING ? v : &v->items[i];
        if (word->type != JSON_STRING || word->length > MAX_STOP_WORD_BYTES || strlen(word->string) != word->length)
            return refuse(e, "'stop' entries must be strings of at most %d bytes", MAX_STOP_WORD_BYTES);
        if (word->length == 0) continue;   // an empty stop word would stop before the first token
        job->stop[job->n_stop] = xcalloc(word->length + 1, 1, "stop word");
        memcpy(job->stop[job->n_stop++], word->string, word->length);
    }
    return 1;
}

// "logit_bias": OpenAI's {"id": bias} (ids as strings), or llama.cpp's [[id, bias], ...] (bias false: banned).
static int field_logit_bias(const Json *body, SamplingParams *p, int vocab_size, FieldError *e) {
    const Json *v = field(body, "logit_bias");
    if (!v) return 1;
    if (v->type != JSON_OBJECT && v->type != JSON_ARRAY) return refuse(e, "'logit_bias' must be an object or an array of [id, bias]");
    p->biases = xcalloc((size_t)v->count + 1, sizeof(LogitBias), "logit_bias");
    for (int i = 0; i < v->count; i++) {
        double id = -1, bias = 0;
        const Json *value = &v->items[i];
        if (v->type == JSON_OBJECT) {
            char *end;
            id = strtod(v->keys[i], &end);
            if (*end || end == v->keys[i]) id = -1;
        } else if (value->type == JSON_ARRAY && value->count == 2 && value->items[0].type == JSON_NUMBER) {
            id = value->items[0].number;
            value = &value->items[1];
        } else {
            id = -1;
        }
        if (id < 0 || id != floor(id) || id >= vocab_size)
            return refuse(e, "'logit_bias' names token %s, not an id in [0, %d)", v->type == JSON_OBJECT ? v->keys[i] : "?", vocab_size);
        if (value->type == JSON_FALSE) bias = -INFINITY;
        else if (value->type == JSON_NUMBER && value->number >= -100 && value->number <= 100) bias = value->number;
        else return refuse(e, "'logit_bias' values must be numbers in [-100, 100] (or false: banned)");
        p->biases[p->n_biases++] = (LogitBias){ (int)id, (float)bias };
    }
    return 1;
}

// "samplers": llama.cpp's names in order (an array) or its letters (a string).
static int field_samplers(const Json *body, SamplingParams *p, FieldError *e) {
    const Json *v = field(body, "samplers");
    if (!v) return 1;
    const char *names[64];
    char letters[64][2];
    int n = 0;
    if (v->type == JSON_STRING) {
        for (size_t i = 0; i < v->length && n < 64; i++) { letters[n][0] = v->string[i]; letters[n][1] = 0; names[n] = letters[n]; n++; }
    } else if (v->type == JSON_ARRAY && v->count <= 64) {
        for (int i = 0; i < v->count; i++) {
            if (v->items[i].type != JSON_STRING) return refuse(e, "'samplers' must be an array of sampler names");
            names[n++] = v->items[i].string;
        }
    } else {
        return refuse(e, "'samplers' must be an array of names or a string of letters");
    }
    char unknown[64];
    if (!parse_sampler_steps(p, names, n, unknown, sizeof unknown))
        return refuse(e, "'samplers': '%.40s' is not one of top_k, top_p, min_p, temperature (k, p, m, t)", unknown);
    return 1;
}

// The sampling fields; defaults differ: llama.cpp's (0.8, 40, 0.95, min_p 0.05) and OpenAI's (1, off, 1, off).
static int parse_sampling(const Json *body, JobSpec *job, const Server *server, FieldError *e) {
    SamplingParams *p = &job->sampling;
    int llama = job->api == API_LLAMA, vocab = server->transformer.config.vocab_size;
    double temperature = llama ? 0.8 : 1.0, top_p = llama ? 0.95 : 1.0, top_k = llama ? 40 : 0, min_p = llama ? 0.05 : 0;
    double seed = -1, max_tokens = -1, n = 1, repeat_penalty = 1, presence = 0, frequency = 0, repeat_last_n = 64;
    // n_predict and max_tokens are aliases on every route (OpenAI's max_completion_tokens too)
    const char *length_key = field(body, "n_predict") ? "n_predict" : field(body, "max_completion_tokens") ? "max_completion_tokens"
                           : "max_tokens";
    if (!field_number(body, "temperature", 0, 100, &temperature, e) || !field_number(body, "top_p", 0, 1, &top_p, e)
        || !field_integer(body, "top_k", -1, vocab, &top_k, e) || !field_number(body, "min_p", 0, 1, &min_p, e)
        || !field_integer(body, "seed", -1, 9007199254740991.0, &seed, e)
        || !field_integer(body, length_key, -1, INT_MAX, &max_tokens, e)
        || !field_integer(body, "n", 1, MAX_CHOICES, &n, e)
        || !field_number(body, "repeat_penalty", 0, 10, &repeat_penalty, e) || !field_integer(body, "repeat_last_n", -1, INT_MAX, &repeat_last_n, e)
        || !field_number(body, "presence_penalty", -2, 2, &presence, e) || !field_number(body, "frequency_penalty", -2, 2, &frequency, e)
        || !field_bool(body, "ignore_eos", &job->ignore_eos, e) || !field_bool(body, "stream", &job->stream, e)
        || !field_bool(body, "cache_prompt", &job->cache_prompt, e) || !field_stop(body, job, e)
        || !field_logit_bias(body, p, vocab, e) || !field_samplers(body, p, e))
        return 0;
    if (repeat_penalty == 0) return refuse(e, "'repeat_penalty' must be above 0");
    const Json *options = field(body, "stream_options");
    if (options && (options->type != JSON_OBJECT || !field_bool(options, "include_usage", &job->include_usage, e)))
        return options->type != JSON_OBJECT ? refuse(e, "'stream_options' must be an object") : 0;
    // below 1e-4, logits / temperature can overflow to inf: that is greedy sampling anyway
    p->temperature = temperature < 1e-4 ? 0.0f : (float)temperature;
    p->top_p = (float)top_p;
    p->top_k = (int)top_k;   // -1 and 0: off (llama.cpp's -1)
    p->min_p = (float)min_p;
    p->repeat_penalty = (float)repeat_penalty;
    p->presence_penalty = (float)presence;
    p->frequency_penalty = (float)frequency;
    p->repeat_last_n = (int)repeat_last_n;
    job->max_tokens = (int)max_tokens;
    job->n_choices = (int)n;
    // xorshift never leaves the state 0: seed 0 takes a fixed other state
    if (seed < 0) {   // a random seed: the clock's nanoseconds differ from request to request
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        job->seed = ((unsigned long long)now.tv_sec << 32 ^ (unsigned long long)now.tv_nsec) | 1;
    } else {
        job->seed = seed == 0 ? 0x9E3779B97F4A7C15ull : (unsigned long long)seed;
    }
    return 1;
}

// logprobs/top_logprobs (OpenAI chat: a bool and a count; OpenAI completions:
// a count) and n_probs (llama.cpp).
static int parse_logprobs(const Json *body, JobSpec *job, FieldError *e) {
    SamplingParams *p = &job->sampling;
    double top = 0;
    if (job->api == API_CHAT) {
        if (!field_bool(body, "logprobs", &p->want_logprobs, e) || !field_integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS, &top, e))
            return 0;
        if (top > 0 && !p->want_logprobs) return refuse(e, "'top_logprobs' needs 'logprobs': true");
    } else if (job->api == API_COMPLETIONS) {
        if (field(body, "logprobs") && !field_integer(body, "logprobs", 0, MAX_TOP_LOGPROBS, &top, e)) return 0;
        p->want_logprobs = field(body, "logprobs") != NULL;
    } else {
        if (!field_integer(body, "n_probs", 0, MAX_TOP_LOGPROBS, &top, e)) return 0;
        p->want_logprobs = top > 0;
    }
    p->n_probs = (int)top;
    return 1;
}

static void push_encoded(TokenList *list, const Tokenizer *tok, const char *text, int add_bos) {
    int *ids = xcalloc(encode_capacity(tok, text), sizeof(int), "prompt tokens");
    int n = encode(tok, text, add_bos, 0, ids);
    for (int i = 0; i < n; i++) push_token(list, ids[i]);
    free(ids);
}

// "prompt": a string (encoded after BOS), or token ids as they are. OpenAI's
// API also takes an array of one string.
static int parse_prompt(const Json *body, JobSpec *job, const Server *server, FieldError *e) {
    const Json *prompt = field(body, "prompt");
    if (prompt && prompt->type == JSON_ARRAY && prompt->count == 1 && prompt->items[0].type == JSON_STRING)
        prompt = &prompt->items[0];
    if (!prompt || (prompt->type == JSON_STRING && strlen(prompt->string) == prompt->length)) {
        push_encoded(&job->prompt, &server->tokenizer, prompt ? prompt->string : "", 1);
        return 1;
    }
    int ok = prompt->type == JSON_ARRAY && prompt->count > 0;
    for (int i = 0; ok && i < prompt->count; i++) {
        const Json *id = &prompt->items[i];
        ok = id->type == JSON_NUMBER && id->number == floor(id->number) && id->number >= 0
             && id->number < server->transformer.config.vocab_size;
        if (ok) push_token(&job->prompt, (int)id->number);
    }
    if (!ok) return refuse(e, "'prompt' must be a string or a non-empty array of token ids in [0, %d)", server->transformer.config.vocab_size);
    return 1;
}

// ----------------------------------------------------------------------------
// Tool calls, each family in its own convention (its chat template's):
//   Llama 3.x   the reply is {"name": "f", "parameters": {...}}
//   Hermes/Qwen (ChatML) <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>, results in <tool_response>
//   Mistral     [TOOL_CALLS] [{"name": "f", "arguments": {...}}], results in [TOOL_RESULTS] ... [/TOOL_RESULTS]
//   otherwise   {"tool_calls": [{"name": "f", "arguments": {...}}]}
// The tools are described to the model after the system prompt; a call is
// constrained by a grammar built from the tools' parameter schemas.

static int choose_tool_format(const Tokenizer *tok, const ChatTemplate *template) {
    if (strcmp(template->name, "llama3") == 0) return TOOLS_LLAMA3;
    if (strcmp(template->name, "chatml") == 0) return TOOLS_HERMES;
    if (strcmp(template->name, "llama2") == 0 && piece_lookup(tok, "[TOOL_CALLS]", 12) >= 0) return TOOLS_MISTRAL;
    return TOOLS_GENERIC;
}

static const char *arguments_key(int format) { return format == TOOLS_LLAMA3 ? "parameters" : "arguments"; }

// The tools as the family's system prompt describes them.
static void describe_tools(Text *out, int format, const Json *tools) {
    if (format == TOOLS_HERMES) {
        text_puts(out, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                       "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (int i = 0; i < tools->count; i++) { text_puts(out, "\n"); text_json_value(out, &tools->items[i]); }
        text_puts(out, "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                       "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>");
    } else if (format == TOOLS_LLAMA3) {
        text_puts(out, "You have access to the following functions. To call a function, respond with JSON for a function call in the "
                       "format {\"name\": function name, \"parameters\": dictionary of argument name and its value}. Do not use variables.");
        for (int i = 0; i < tools->count; i++) { text_puts(out, "\n\n"); text_json_value(out, &tools->items[i]); }
    } else if (format == TOOLS_MISTRAL) {
        text_puts(out, "[AVAILABLE_TOOLS] ");
        text_json_value(out, tools);
        text_puts(out, "[/AVAILABLE_TOOLS]");
    } else {
        text_puts(out, "You can call these tools. To call them, reply with {\"tool_calls\": [{\"name\": tool name, \"arguments\": "
                       "{argument name: value}}]} and nothing else.");
        for (int i = 0; i < tools->count; i++) { text_puts(out, "\n"); text_json_value(out, &tools->items[i]); }
    }
}

// One call as the family writes it (the prompt's history of earlier calls).
static void write_call(Text *out, int format, const char *name, const char *arguments) {
    text_puts(out, "{\"name\": ");
    text_json_cstring(out, name);
    text_printf(out, ", \"%s\": %s}", arguments_key(format), arguments);
}

// The grammar of a reply that is tool calls (forced calls, or after the
// trigger): each call spelled as write_call spells it, its arguments by the
// tool's schema; up to 4 calls when parallel calls are allowed.
static void tool_call_rules(Text *out, int format, const ToolSpec *tools, int n_tools, int parallel) {
    text_puts(out, "call ::= ");
    for (int i = 0; i < n_tools; i++)   // names are letters, digits, _ and -: literal as they are
        text_printf(out, "%s\"{\\\"name\\\": \\\"%s\\\", \\\"%s\\\": \" tool%d-args \"}\"", i ? " | " : "", tools[i].name,
                    arguments_key(format), i);
    text_puts(out, "\n");
    const char *more = parallel ? "{0,3}" : "{0,0}";
    if (format == TOOLS_HERMES)
        text_printf(out, "root ::= \"<tool_call>\\n\" call \"\\n</tool_call>\" (\"\\n<tool_call>\\n\" call \"\\n</tool_call>\")%s\n", more);
    else if (format == TOOLS_MISTRAL)
        text_printf(out, "root ::= \"[TOOL_CALLS] [\" call (\", \" call)%s \"]\"\n", more);
    else if (format == TOOLS_LLAMA3)
        text_puts(out, "root ::= call\n");
    else
        text_printf(out, "root ::= \"{\\\"tool_calls\\\": [\" call (\", \" call)%s \"]}\"\n", more);
}

// Where the reply's tool calls start in text, or -1: the family's trigger
// (auto mode constrains the rest once it appears).
static long tool_trigger(int format, const char *text, size_t length) {
    if (format == TOOLS_HERMES) {
        const char *at = strstr(text, "<tool_call>");
        return at ? at - text : -1;
    }
    if (format == TOOLS_MISTRAL) {
        const char *at = strstr(text, "[TOOL_CALLS]");
        return at ? at - text : -1;
    }
    size_t i = 0;   // Llama 3 and the others: a reply that opens with {
    while (i < length && isspace((unsigned char)text[i])) i++;
    return i < length && text[i] == '{' ? (long)i : -1;
}

// Could text still become the trigger (so it must not be streamed as content yet)?
static int tool_trigger_pending(int format, const char *text, size_t length) {
    const char *trigger = format == TOOLS_HERMES ? "<tool_call>" : format == TOOLS_MISTRAL ? "[TOOL_CALLS]" : NULL;
    if (!trigger) {   // an opening {: only whitespace so far
        for (size_t i = 0; i < length; i++) if (!isspace((unsigned char)text[i])) return 0;
        return 1;
    }
    size_t n = strlen(trigger);
    for (size_t k = n - 1; k > 0; k--)
        if (k <= length && memcmp(text + length - k, trigger, k) == 0) return 1;
    return 0;
}

// A finished call: its name and its arguments as compact JSON.
typedef struct {
    char name[128];
    char *arguments;
    char id[32];
} ToolCall;

// The calls in text (what the grammar produced from the trigger on); the number found.
static int parse_tool_calls(int format, const char *text, ToolCall *calls, int max_calls) {
    const char *start = text;
    while (*start && *start != '{' && *start != '[') start++;
    if (format == TOOLS_HERMES) start = text;
    int n = 0;
    const char *cursor = start;
    for (;;) {
        const char *open = NULL;
        if (format == TOOLS_HERMES) {
            const char *tag = strstr(cursor, "<tool_call>");
            if (!tag) break;
            open = tag + strlen("<tool_call>");
            const char *close = strstr(open, "</tool_call>");
            if (!close) break;
            cursor = close + strlen("</tool_call>");
            size_t length = (size_t)(close - open);
            char *one = xcalloc(length + 1, 1, "tool call");
            memcpy(one, open, length);
            Json call;
            char error[128];
            if (json_parse_untrusted(one, length, &call, error, sizeof error)) {
                const Json *name = json_get(&call, "name"), *args = json_get(&call, "arguments");
                if (name && name->type == JSON_STRING && args && n < max_calls) {
                    snprintf(calls[n].name, sizeof calls[n].name, "%s", name->string);
                    Text a = text_new();
                    text_json_value(&a, args);
                    calls[n++].arguments = a.data;
                }
                json_free(&call);
            }
            free(one);
            continue;
        }
        // the others: one JSON value holding the call(s)
        Json value;
        char error[128];
        const char *marker = format == TOOLS_MISTRAL ? strstr(cursor, "[TOOL_CALLS]") : NULL;   // the list after it
        const char *json_text = format == TOOLS_MISTRAL ? strchr(marker ? marker + 12 : cursor, '[') : cursor;
        if (!json_text || !json_parse_untrusted(json_text, strlen(json_text), &value, error, sizeof error)) break;
        const Json *list = format == TOOLS_GENERIC ? json_get(&value, "tool_calls") : &value;
        int count = list && list->type == JSON_ARRAY ? list->count : list && list->type == JSON_OBJECT ? 1 : 0;
        for (int i = 0; i < count && n < max_calls; i++) {
            const Json *call = list->type == JSON_ARRAY ? &list->items[i] : list;
            const Json *name = json_get(call, "name"), *args = json_get(call, arguments_key(format));
            if (!name || name->type != JSON_STRING || !args) continue;
            snprintf(calls[n].name, sizeof calls[n].name, "%s", name->string);
            Text a = text_new();
            text_json_value(&a, args);
            calls[n++].arguments = a.data;
        }
        json_free(&value);
        break;
    }
    return n;
}

// "tools": [{"type": "function", "function": {"name", "description", "parameters"}}]
static int parse_tools(const Json *body, JobSpec *job, const Server *server, Text *description, FieldError *e) {
    const Json *tools = field(body, "tools"), *choice = field(body, "tool_choice");
    if (!tools) return 1;
    if (tools->type != JSON_ARRAY || tools->count > MAX_TOOLS) return refuse(e, "'tools' must be an array of at most %d tools", MAX_TOOLS);
    if (tools->count == 0) return 1;
    const char *forced = NULL;    // a named function
    int mode = 1;                 // 0 none, 1 auto, 2 required
    if (choice && choice->type == JSON_STRING) {
        mode = strcmp(choice->string, "none") == 0 ? 0 : strcmp(choice->string, "auto") == 0 ? 1 : strcmp(choice->string, "required") == 0 ? 2 : -1;
        if (mode < 0) return refuse(e, "'tool_choice' must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":...}}");
    } else if (choice) {
        const Json *function = json_get(choice, "function"), *name = function ? json_get(function, "name") : NULL;
        if (!name || name->type != JSON_STRING) return refuse(e, "'tool_choice' must name a function: {\"type\":\"function\",\"function\":{\"name\":...}}");
        forced = name->string;
        mode = 2;
    }
    const Json *schemas[MAX_TOOLS];
    char names_storage[MAX_TOOLS][24];
    const char *names[MAX_TOOLS];
    for (int i = 0; i < tools->count; i++) {
        const Json *function = json_get(&tools->items[i], "function");
        const Json *name = function ? json_get(function, "name") : NULL, *parameters = function ? json_get(function, "parameters") : NULL;
        if (!name || name->type != JSON_STRING || name->length == 0 || name->length > 64
            || strspn(name->string, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != name->length)
            return refuse(e, "tools[%d].function.name must be 1 to 64 letters, digits, _ or -", i);
        if (parameters && parameters->type != JSON_OBJECT) return refuse(e, "tools[%d].function.parameters must be a JSON schema object", i);
        snprintf(job->tools[job->n_tools].name, sizeof job->tools[0].name, "%s", name->string);
        static const Json empty_object = { .type = JSON_OBJECT };
        schemas[job->n_tools] = parameters ? parameters : &empty_object;
        snprintf(names_storage[job->n_tools], sizeof names_storage[0], "tool%d-args", job->n_tools);
        names[job->n_tools] = names_storage[job->n_tools];
        job->n_tools++;
    }
    if (forced) {   // only the named function may be called
        int at = -1;
        for (int i = 0; i < job->n_tools; i++) if (strcmp(job->tools[i].name, forced) == 0) at = i;
        if (at < 0) return refuse(e, "'tool_choice' names '%.60s', which is not among the tools", forced);
        job->tools[0] = job->tools[at];
        schemas[0] = schemas[at];
        job->n_tools = 1;
    }
    if (mode == 0) { job->n_tools = 0; return 1; }   // none: the model is not told of them
    describe_tools(description, server->tool_format, tools);
    int parallel = 1;
    if (!field_bool(body, "parallel_tool_calls", &parallel, e)) return 0;
    Text extra = text_new();
    tool_call_rules(&extra, server->tool_format, job->tools, job->n_tools, parallel);
    char error[300];
    char *gbnf = json_schemas_to_grammar(schemas, names, job->n_tools, extra.data, error, sizeof error);
    text_free(&extra);
    if (!gbnf) return refuse(e, "'tools': %s", error);
    int ok = parse_grammar(gbnf, &job->grammar, error, sizeof error);
    free(gbnf);
    if (!ok) return refuse(e, "'tools': %s", error);
    job->has_grammar = 1;
    job->lazy_grammar = mode == 1;
    return 1;
}

// ----------------------------------------------------------------------------
// Chat conversations: OpenAI's messages through the model's chat template.
// System (and developer) messages join the first turn's system prompt; each
// user message makes a turn; an assistant message is its reply and the
// end-of-turn token (an assistant message with no user message before it
// answers an empty user turn; two in a row are one reply, joined by a blank
// line; its tool_calls are written as the family writes them); tool messages
// go in the family's own way. The last message must be the user's or a tool's.

// A message's text: a string, OpenAI's array of parts {"type":"text","text":...}, or null (empty).
static int message_text(const Json *content, Text *out) {
    if (!content || content->type == JSON_NULL) return 1;
    if (content->type == JSON_STRING) { text_append(out, content->string, strlen(content->string)); return 1; }
    if (content->type != JSON_ARRAY) return 0;
    for (int i = 0; i < content->count; i++) {
        const Json *text = json_get(&content->items[i], "text"), *type = json_get(&content->items[i], "type");
        if (!text || text->type != JSON_STRING || !type || type->type != JSON_STRING || strcmp(type->string, "text") != 0)
            return 0;
        text_append(out, text->string, strlen(text->string));
    }
    return 1;
}

// An assistant message's tool_calls, written as the family writes them.
static int message_tool_calls(const Json *calls, int format, Text *out, int index, FieldError *e) {
    if (calls->type != JSON_ARRAY) return refuse(e, "messages[%d].tool_calls must be an array", index);
    if (format == TOOLS_MISTRAL) text_puts(out, "[TOOL_CALLS] [");
    else if (format == TOOLS_GENERIC) text_puts(out, "{\"tool_calls\": [");
    for (int i = 0; i < calls->count; i++) {
        const Json *function = json_get(&calls->items[i], "function");
        const Json *name = function ? json_get(function, "name") : NULL, *args = function ? json_get(function, "arguments") : NULL;
        if (!name || name->type != JSON_STRING || !args || args->type != JSON_STRING)
            return refuse(e, "messages[%d].tool_calls[%d] needs function.name and function.arguments (a JSON string)", index, i);
        Json parsed;
        char error[128];
        if (!json_parse_untrusted(args->string, args->length, &parsed, error, sizeof error))
            return refuse(e, "messages[%d].tool_calls[%d].function.arguments is not JSON: %s", index, i, error);
        Text compact = text_new();
        text_json_value(&compact, &parsed);
        json_free(&parsed);
        if (format == TOOLS_HERMES) text_puts(out, i ? "\n<tool_call>\n" : "<tool_call>\n");
        else if (i) text_puts(out, format == TOOLS_LLAMA3 ? "\n" : ", ");
        write_call(out, format, name->string, compact.data);
        if (format == TOOLS_HERMES) text_puts(out, "\n</tool_call>");
        text_free(&compact);
    }
    if (format == TOOLS_MISTRAL) text_puts(out, "]");
    else if (format == TOOLS_GENERIC) text_puts(out, "]}");
    return 1;
}

static char *text_take(Text *t) { char *s = t->data; memset(t, 0, sizeof *t); return s ? s : strdup(""); }

static void free_conversation(Conversation *c) {
    for (int i = 0; i < c->count; i++) { free(c->messages[i].content); free(c->messages[i].tool_calls); }
    free(c->messages);
    free(c->system);
    memset(c, 0, sizeof *c);
}

static int parse_messages(const Json *body, JobSpec *job, const Server *server, const Text *tools_description, FieldError *e) {
    const Json *messages = field(body, "messages");
    if (!messages || messages->type != JSON_ARRAY || messages->count == 0) return refuse(e, "'messages' must be a non-empty array");
    Conversation *c = &job->conversation;
    c->messages = xcalloc((size_t)messages->count, sizeof(RequestMessage), "messages");
    Text system = text_new();
    for (int i = 0; i < messages->count; i++) {
        const Json *m = &messages->items[i], *role = json_get(m, "role"), *calls = field(m, "tool_calls");
        Text content = text_new();
        int is_assistant = role && role->type == JSON_STRING && strcmp(role->string, "assistant") == 0;
        const Json *given = field(m, "content");
        if (!role || role->type != JSON_STRING || (!given && !(is_assistant && calls)) || !message_text(given, &content)) {
            text_free(&content);
            text_free(&system);
            return refuse(e, "messages[%d] needs a string 'role' and a text 'content' (a string or text parts; null only "
                             "for an assistant's tool_calls)", i);
        }
        const char *r = role->string;
        if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0) {
            if (system.length > 0 && content.length > 0) text_puts(&system, "\n");
            text_append(&system, content.data, content.length);
            text_free(&content);
            continue;
        }
        int kind = strcmp(r, "user") == 0 ? ROLE_USER : strcmp(r, "assistant") == 0 ? ROLE_ASSISTANT
                 : strcmp(r, "tool") == 0 || strcmp(r, "function") == 0 ? ROLE_TOOL : -1;
        if (kind < 0) {
            text_free(&content);
            text_free(&system);
            return refuse(e, "messages[%d]: role '%.40s' is not system, developer, user, assistant or tool", i, r);
        }
        Text call_text = text_new();
        if (kind == ROLE_ASSISTANT && calls && !message_tool_calls(calls, server->tool_format, &call_text, i, e)) {
            text_free(&content);
            text_free(&call_text);
            text_free(&system);
            return 0;
        }
        if (kind == ROLE_TOOL && c->count == 0) {
            text_free(&content);
            text_free(&call_text);
            text_free(&system);
            return refuse(e, "messages[%d]: a tool message must follow the assistant's call", i);
        }
        RequestMessage *previous = c->count ? &c->messages[c->count - 1] : NULL;
        if (kind == ROLE_ASSISTANT && previous && previous->role == ROLE_ASSISTANT && !previous->tool_calls) {
            Text joined = text_new();   // two replies in a row: one reply
            text_puts(&joined, previous->content);
            if (joined.length && content.length) text_puts(&joined, "\n\n");
            text_append(&joined, content.data, content.length);
            free(previous->content);
            previous->content = text_take(&joined);
            previous->tool_calls = call_text.length ? text_take(&call_text) : NULL;
            text_free(&call_text);
            text_free(&content);
            continue;
        }
        c->messages[c->count++] = (RequestMessage){ kind, text_take(&content), call_text.length ? text_take(&call_text) : NULL };
        text_free(&call_text);
    }
    if (tools_description->length) {
        if (system.length) text_puts(&system, "\n\n");
        text_append(&system, tools_description->data, tools_description->length);
    }
    c->system = text_take(&system);
    if (c->count == 0 || c->messages[c->count - 1].role == ROLE_ASSISTANT)
        return refuse(e, "the last message must be the user's (or a tool's result)");
    return 1;
}

// A format of the tool-result turns below (special tokens as text, %s filled
// by fill in order) as ids, as the chat templates render theirs.
static TokenList render_format_ids(const Tokenizer *t, const char *format, const char *const *fill) {
    TokenList list = { 0 };
    Rendering r = { .list = &list };
    render_format(&r, t, format, fill);
    rendering_flush(&r, t);
    free(r.text);
    return list;
}

// Consecutive tool results from message i on, in the family's format; returns the index after them.
static int render_tool_results(const Server *server, const Conversation *c, int i, int first, TokenList *out) {
    int end = i;
    while (end < c->count && c->messages[end].role == ROLE_TOOL) end++;
    int n = end - i;
    Text format = text_new();
    const char **results = xcalloc((size_t)n + 1, sizeof(char *), "tool results");
    for (int k = 0; k < n; k++) results[k] = c->messages[i + k].content;
    TokenList rendered = { 0 };
    switch (server->tool_format) {
    case TOOLS_LLAMA3:
        for (int k = 0; k < n; k++) text_puts(&format, "<|start_header_id|>ipython<|end_header_id|>\n\n%s<|eot_id|>");
        text_puts(&format, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        rendered = render_format_ids(&server->tokenizer, format.data, results);
        break;
    case TOOLS_HERMES:
        text_puts(&format, "\n<|im_start|>user");
        for (int k = 0; k < n; k++) text_puts(&format, "\n<tool_response>\n%s\n</tool_response>");
        text_puts(&format, "<|im_end|>\n<|im_start|>assistant\n");
        rendered = render_format_ids(&server->tokenizer, format.data, results);
        break;
    default: {   // Mistral and the others: the results as a user turn (Mistral's [TOOL_RESULTS] are text to its template)
        Text turn = text_new();
        for (int k = 0; k < n; k++) {
            text_puts(&turn, server->tool_format == TOOLS_MISTRAL ? "[TOOL_RESULTS] {\"content\": " : k ? "\n" : "Tool results:\n");
            if (server->tool_format == TOOLS_MISTRAL) { text_json_cstring(&turn, results[k]); text_puts(&turn, "}[/TOOL_RESULTS]"); }
            else text_puts(&turn, results[k]);
        }
        rendered = chat_turn(&server->tokenizer, server->chat_template, first, c->system, turn.data, c->enable_thinking == 1);
        text_free(&turn);
    }
    }
    for (int k = 0; k < rendered.count; k++) push_token(out, rendered.ids[k]);
    free(rendered.ids);
    free(results);
    text_free(&format);
    return end;
}

// The conversation from message `from` on into prompt tokens (the system
// prompt kept whatever is dropped). A template that thinks (Qwen3) thinks
// only when the request says enable_thinking: true (itself or in
// chat_template_kwargs), as runq's chat only with --think: on a board a
// reply comes sooner without.
static void render_conversation(const Server *server, const Conversation *c, int from, TokenList *out) {
    const Tokenizer *tok = &server->tokenizer;
    out->count = 0;
    int first = 1, open = 0;   // open: an assistant reply is due next
    for (int i = from; i < c->count;) {
        const RequestMessage *m = &c->messages[i];
        if (m->role == ROLE_TOOL) {
            i = render_tool_results(server, c, i, first, out);
            first = 0, open = 1;
            continue;
        }
        if (m->role == ROLE_USER || !open) {   // a user turn (empty before an assistant greeting)
            TokenList turn = chat_turn(tok, server->chat_template, first, c->system, m->role == ROLE_USER ? m->content : "",
                                       c->enable_thinking == 1);
            for (int k = 0; k < turn.count; k++) push_token(out, turn.ids[k]);
            free(turn.ids);
            first = 0, open = 1;
            if (m->role == ROLE_USER) { i++; continue; }
        }
        if (m->content[0]) push_encoded(out, tok, m->content, 0);
        if (m->tool_calls) {
            if (server->tool_format == TOOLS_MISTRAL && server->tool_calls_token >= 0 && strncmp(m->tool_calls, "[TOOL_CALLS]", 12) == 0) {
                push_token(out, server->tool_calls_token);
                push_encoded(out, tok, m->tool_calls + 12 + (m->tool_calls[12] == ' '), 0);   // encode adds its own space
            } else {
                Text calls = text_new();
                if (m->content[0]) text_puts(&calls, "\n");
                text_puts(&calls, m->tool_calls);
                push_encoded(out, tok, calls.data, 0);
                text_free(&calls);
            }
        }
        push_token(out, server->end_of_turn);
        open = 0;
        i++;
    }
}

// Drop the oldest turns (from the first on, whole user turns at a time; the
// system prompt stays) until the prompt and `room` tokens fit in the context;
// the last user turn is never dropped. Returns the prompt's token count.
static int fit_conversation(const Server *server, JobSpec *job, int room) {
    int context = server->transformer.state.cache_len;
    const Conversation *c = &job->conversation;
    int last_user = c->count - 1;
    while (last_user > 0 && c->messages[last_user].role != ROLE_USER) last_user--;
    render_conversation(server, c, job->first_turn, &job->prompt);
    while (job->prompt.count + room > context && job->first_turn < last_user) {
        int next = job->first_turn + 1;
        while (next < last_user && c->messages[next].role != ROLE_USER) next++;
        job->first_turn = next;
        render_conversation(server, c, job->first_turn, &job->prompt);
    }
    return job->prompt.count;
}

// ----------------------------------------------------------------------------
// Constrained output: llama.cpp's "grammar" (GBNF) and "json_schema",
// OpenAI's response_format (json_object: any JSON object; json_schema: that
// schema). At most one of them per request, and not with tools.

static const char json_object_schema[] = "{\"type\": \"object\"}";

static int compile_schema(const Json *schema, JobSpec *job, const char *what, FieldError *e) {
    char error[300];
    char *gbnf = json_schema_to_grammar(schema, NULL, error, sizeof error);
    if (!gbnf) return refuse(e, "'%s': %s", what, error);
    int ok = parse_grammar(gbnf, &job->grammar, error, sizeof error);
    free(gbnf);
    if (!ok) return refuse(e, "'%s': %s", what, error);
    job->has_grammar = 1;
    return 1;
}

static int parse_constraints(const Json *body, JobSpec *job, FieldError *e) {
    const Json *grammar = field(body, "grammar"), *schema = field(body, "json_schema"), *format = field(body, "response_format");
    const char *type = NULL;
    if (format) {
        const Json *t = json_get(format, "type");
        if (format->type != JSON_OBJECT || !t || t->type != JSON_STRING) return refuse(e, "'response_format' must be {\"type\": ...}");
        type = t->string;
        if (strcmp(type, "text") == 0) format = NULL;
        else if (strcmp(type, "json_object") != 0 && strcmp(type, "json_schema") != 0)
            return refuse(e, "'response_format.type' must be text, json_object or json_schema");
    }
    if ((grammar != NULL) + (schema != NULL) + (format != NULL) > 1) return refuse(e, "give one of 'grammar', 'json_schema' and 'response_format'");
    if ((grammar || schema || format) && job->n_tools) return refuse(e, "'tools' and a grammar or response_format cannot be combined");
    if (grammar) {
        if (grammar->type != JSON_STRING || strlen(grammar->string) != grammar->length) return refuse(e, "'grammar' must be a string");
        char error[300];
        if (!parse_grammar(grammar->string, &job->grammar, error, sizeof error)) return refuse(e, "'grammar': %s", error);
        job->has_grammar = 1;
        return 1;
    }
    if (schema) return compile_schema(schema, job, "json_schema", e);
    if (!format) return 1;
    if (strcmp(type, "json_schema") == 0) {   // {"type":"json_schema","json_schema":{"name":...,"schema":{...}}}
        const Json *wrapper = json_get(format, "json_schema"), *inner = wrapper ? json_get(wrapper, "schema") : NULL;
        if (!inner) inner = json_get(format, "schema");   // llama.cpp also takes it here
        if (!inner) return refuse(e, "'response_format.json_schema.schema' is missing");
        return compile_schema(inner, job, "response_format.json_schema.schema", e);
    }
    Json any_object;
    char error[64];
    json_parse_untrusted(json_object_schema, strlen(json_object_schema), &any_object, error, sizeof error);
    int ok = compile_schema(&any_object, job, "response_format", e);
    json_free(&any_object);
    return ok;
}

// ----------------------------------------------------------------------------
// A request body into a job; 0 and the reason (for a 400) if it is not one.

static void free_job_spec(JobSpec *job) {
    free(job->prompt.ids);
    for (int i = 0; i < job->n_stop; i++) free(job->stop[i]);
    free(job->sampling.biases);
    if (job->has_grammar) free_grammar(&job->grammar);
    free_conversation(&job->conversation);
    memset(job, 0, sizeof *job);
}

static int parse_thinking(const Json *body, JobSpec *job, FieldError *e) {
    job->conversation.enable_thinking = -1;
    const Json *kwargs = field(body, "chat_template_kwargs");
    if (kwargs && kwargs->type != JSON_OBJECT) return refuse(e, "'chat_template_kwargs' must be an object");
    if (kwargs && !field_bool(kwargs, "enable_thinking", &job->conversation.enable_thinking, e)) return 0;
    if (!field_bool(body, "enable_thinking", &job->conversation.enable_thinking, e)) return 0;
    const Json *format = field(body, "reasoning_format");
    job->reasoning_format = REASONING_DEEPSEEK;
    if (format) {
        if (format->type != JSON_STRING) return refuse(e, "'reasoning_format' must be none, auto or deepseek");
        if (strcmp(format->string, "none") == 0) job->reasoning_format = REASONING_NONE;
        else if (strcmp(format->string, "auto") != 0 && strcmp(format->string, "deepseek") != 0)
            return refuse(e, "'reasoning_format' must be none, auto or deepseek");
    }
    return 1;
}

static int parse_job(const Request *r, int api, const Server *server, JobSpec *job, FieldError *e) {
    memset(job, 0, sizeof *job);
    job->api = api;
    job->cache_prompt = 1;
    job->n_keep = 0;
    SamplingParams *p = &job->sampling;
    const char default_steps[] = { STEP_TOP_K, STEP_TOP_P, STEP_MIN_P, STEP_TEMPERATURE };
    memcpy(p->steps, default_steps, sizeof default_steps);
    p->n_steps = (int)sizeof default_steps;
    Json body;
    char syntax[128];
    if (!json_parse_fields(r->body, (size_t)r->content_length, generation_fields, &body, syntax, sizeof syntax))
        return refuse(e, "%s", syntax);
    int ok = body.type == JSON_OBJECT || refuse(e, "the body must be a JSON object");
    Text tools_description = text_new();
    double n_keep = 0;
    ok = ok && parse_sampling(&body, job, server, e) && parse_logprobs(&body, job, e) && parse_thinking(&body, job, e)
            && field_integer(&body, "n_keep", -1, INT_MAX, &n_keep, e)
            && (api != API_CHAT || parse_tools(&body, job, server, &tools_description, e)) && parse_constraints(&body, job, e);
    job->n_keep = (int)n_keep;
    job->has_n_keep = field(&body, "n_keep") != NULL;
    int context = server->transformer.state.cache_len;
    if (ok && api == API_CHAT) {
        ok = parse_messages(&body, job, server, &tools_description, e);
        if (ok) {
            render_conversation(server, &job->conversation, 0, &job->prompt);
            job->n_prompt_given = job->prompt.count;
            // room for a reply: what max_tokens asks, at most half the context; a quarter when it asks none
            int room = job->max_tokens > 0 ? (job->max_tokens < context / 2 ? job->max_tokens : context / 2) : context / 4;
            fit_conversation(server, job, room < 1 ? 1 : room);
        }
    } else if (ok) {
        ok = parse_prompt(&body, job, server, e);
        job->n_prompt_given = job->prompt.count;
        if (ok && job->prompt.count >= context && job->has_n_keep) {   // llama.cpp's truncation: keep n_keep, drop blocks after it
            int keep = job->n_keep < 0 || job->n_keep > context / 2 ? context / 2 : job->n_keep;
            int block = (context - keep) / 2, erased = (job->prompt.count - keep - block) / block + 1;
            int from = keep + erased * block;
            memmove(job->prompt.ids + keep, job->prompt.ids + from, (size_t)(job->prompt.count - from) * sizeof(int));
            job->prompt.count -= from - keep;
        }
    }
    if (ok && job->prompt.count >= context)
        ok = refuse(e, "the prompt is %d tokens; the context holds %d (--ctx)%s", job->prompt.count, context,
                    api == API_CHAT ? ", even with only the last turn kept" : "");
    text_free(&tools_description);
    json_free(&body);
    if (!ok) free_job_spec(job);
    return ok;
}

// ----------------------------------------------------------------------------
// A choice: one sequence being generated, with its own sampler, grammar,
// tokens and text. Its steps (sample a token from logits, take it) are all
// the worker's slots need to drive it, a token per batched forward pass.

typedef struct {
    StepLogprobs *items;
    int count, capacity;
    int streamed;                 // items already sent in events
} LogprobList;

typedef struct {
    int index;                    // in the response's choices
    ChainSampler sampler;
    GrammarState grammar;
    int grammar_active;           // constrained now (a lazy grammar starts at its trigger)
    GrammarWalk walk;
    TokenList tokens;             // the prompt, then each token taken (penalties look back over it)
    int last_token;               // the token before the next (decoding's context)
    Text content;                 // the reply so far (a stop word cut off)
    size_t sent;                  // bytes of content streamed
    long tool_start;              // where tool calls begin in content, -1: none (yet)
    int n_predicted;
    const char *stop_type;        // llama.cpp's: "eos", "word", "limit", "abort" (client gone, shutdown), "tool_calls"
    const char *stopping_word;
    LogprobList logprobs;
    int role_sent;                // chat streams name the role in their first chunk
    ToolCall calls[MAX_TOOL_CALLS];
    int n_calls;
} Choice;

static void free_choice(Choice *c) {
    free_chain_sampler(&c->sampler);
    grammar_state_free(&c->grammar);
    grammar_walk_free(&c->walk);
    free(c->tokens.ids);
    text_free(&c->content);
    for (int i = 0; i < c->logprobs.count; i++) free(c->logprobs.items[i].top);
    free(c->logprobs.items);
    for (int i = 0; i < c->n_calls; i++) free(c->calls[i].arguments);
    memset(c, 0, sizeof *c);
}

static void start_choice(const Server *server, const JobSpec *spec, Choice *c, int index) {
    memset(c, 0, sizeof *c);
    c->index = index;
    c->content = text_new();
    c->tool_start = -1;
    c->stop_type = "limit";
    build_chain_sampler(&c->sampler, &spec->sampling, server->transformer.config.vocab_size, spec->seed + (unsigned long long)index * 0x9E3779B9ull);
    if (spec->has_grammar) {
        grammar_start(&spec->grammar, &c->grammar);
        grammar_walk_init(&c->walk, &spec->grammar);
        c->grammar_active = !spec->lazy_grammar;
        if (spec->n_tools && !spec->lazy_grammar) c->tool_start = 0;   // forced calls: the whole reply is calls
    }
    for (int i = 0; i < spec->prompt.count; i++) push_token(&c->tokens, spec->prompt.ids[i]);
    c->last_token = spec->prompt.ids[spec->prompt.count - 1];
}

// The bytes a token adds to the text after prev (SentencePiece drops a leading space after BOS).
static const char *token_bytes(const Server *server, int prev, int token, int *length) {
    const TokenText *t = &server->token_texts[token];
    const char *bytes = t->bytes;
    *length = t->length;
    if (prev == server->tokenizer.bos_id && server->tokenizer.kind == TOKENIZER_SENTENCEPIECE && *length > 0 && bytes[0] == ' ')
        bytes++, (*length)--;
    return bytes;
}

typedef struct {
    const Server *server;
    Choice *choice;
} MaskContext;

// The grammar's mask: a text token whose bytes continue the parse; an end
// token only where the parse is complete; Mistral's [TOOL_CALLS] as its text.
static int grammar_mask(void *raw, int token) {
    MaskContext *m = raw;
    const Server *server = m->server;
    Choice *c = m->choice;
    int is_end = ends_generation(&server->tokenizer, token) || token == server->end_of_turn;
    if (is_end) return grammar_complete(&c->grammar);
    const TokenText *t = &server->token_texts[token];
    if (t->control && token != server->tool_calls_token) return 0;
    int length;
    const char *bytes = token_bytes(server, c->last_token, token, &length);
    return grammar_allows(&c->walk, &c->grammar, (const unsigned char *)bytes, (size_t)length);
}

// The next token of a choice from its logits (which it changes); -1: the grammar allows nothing.
static int choice_sample(const Server *server, const JobSpec *spec, Choice *c, float *logits) {
    int want = spec->sampling.want_logprobs || spec->sampling.n_probs > 0;
    if (want) keep_model_distribution(&c->sampler, logits);   // before any sampler changes the logits
    if (spec->ignore_eos)
        for (int i = 0; i < c->sampler.vocab_size; i++)
            if (ends_generation(&server->tokenizer, i) || i == server->end_of_turn) logits[i] = -INFINITY;
    MaskContext mask = { server, c };
    int next = chain_sample(&c->sampler, logits, c->tokens.ids, c->tokens.count, c->grammar_active ? grammar_mask : NULL, &mask);
    if (want && next >= 0) {
        if (c->logprobs.count == c->logprobs.capacity) {
            c->logprobs.capacity = c->logprobs.capacity * 2 + 16;
            c->logprobs.items = realloc(c->logprobs.items, (size_t)c->logprobs.capacity * sizeof(StepLogprobs));
            if (!c->logprobs.items) die("out of memory keeping log-probabilities");
        }
        step_logprobs(&c->sampler, next, spec->sampling.n_probs, &c->logprobs.items[c->logprobs.count++]);
    }
    return next;
}

// The first stop word in content; sets c->stopping_word and returns its offset, or -1.
static long find_stop_word(Choice *c, const JobSpec *spec) {
    long first = -1;
    for (int i = 0; i < spec->n_stop; i++) {
        const char *hit = strstr(c->content.data, spec->stop[i]);
        if (hit && (first < 0 || hit - c->content.data < first)) {
            first = hit - c->content.data;
            c->stopping_word = spec->stop[i];
        }
    }
    return first;
}

// A lazy grammar (tools, tool_choice auto) starts when the trigger appears:
// what came from the trigger on must parse, else it was no call after all.
static void watch_tool_trigger(const Server *server, const JobSpec *spec, Choice *c) {
    if (!spec->lazy_grammar || c->grammar_active || c->tool_start == -2) return;
    long at = tool_trigger(server->tool_format, c->content.data, c->content.length);
    if (at < 0) return;
    const unsigned char *from = (const unsigned char *)c->content.data + at;
    size_t n = c->content.length - (size_t)at;
    if (grammar_accept(&c->walk, &c->grammar, from, n)) { c->grammar_active = 1; c->tool_start = at; }
    else c->tool_start = -2;   // it opened like a call but is none: plain text from here
}

// A token taken into the choice: its text, the grammar, the stop checks.
// Returns 1 when the choice has ended (stop_type says why).
static int choice_accept(const Server *server, const JobSpec *spec, Choice *c, int token) {
    int is_end = ends_generation(&server->tokenizer, token) || token == server->end_of_turn;
    if (is_end && !(c->grammar_active && !grammar_complete(&c->grammar))) {
        c->stop_type = c->grammar_active && c->tool_start >= 0 ? "tool_calls" : "eos";
        return 1;
    }
    int length;
    const char *bytes = token_bytes(server, c->last_token, token, &length);
    if (server->token_texts[token].control && token != server->tool_calls_token) length = 0;   // no text (ignore_eos past an end)
    if (c->grammar_active) grammar_accept(&c->walk, &c->grammar, (const unsigned char *)bytes, (size_t)length);
    text_append(&c->content, bytes, (size_t)length);
    push_token(&c->tokens, token);
    c->last_token = token;
    c->n_predicted++;
    watch_tool_trigger(server, spec, c);
    long stop_at = c->grammar_active ? -1 : find_stop_word(c, spec);   // a grammar's text is never cut
    if (stop_at >= 0) {
        c->content.length = (size_t)stop_at;
        c->content.data[stop_at] = '\0';
        c->stop_type = "word";
        return 1;
    }
    if (c->grammar_active && grammar_finished(&c->grammar)) {   // nothing may follow: done without waiting for EOS
        c->stop_type = c->tool_start >= 0 ? "tool_calls" : "eos";
        return 1;
    }
    return 0;
}

// After the choice ended: a reply that is tool calls becomes its calls (a
// call cut short, by the length or an abort, stays text).
static void finish_choice(const Server *server, const JobSpec *spec, Choice *c) {
    if (spec->n_tools == 0 || c->tool_start < 0 || !grammar_complete(&c->grammar)) return;
    long at = c->tool_start;
    c->n_calls = parse_tool_calls(server->tool_format, c->content.data + at, c->calls, MAX_TOOL_CALLS);
    for (int i = 0; i < c->n_calls; i++) snprintf(c->calls[i].id, sizeof c->calls[i].id, "call_%d_%d", c->index, i);
    if (c->n_calls > 0) {
        c->stop_type = "tool_calls";
        c->content.length = (size_t)at;   // the text before the calls stays the content
        while (c->content.length > 0 && isspace((unsigned char)c->content.data[c->content.length - 1])) c->content.length--;
        c->content.data[c->content.length] = '\0';
    }
}

// ----------------------------------------------------------------------------
// Responses: llama.cpp's and OpenAI's JSON, and their events

typedef struct {
    Choice choices[MAX_CHOICES];
    int n_choices;
    int n_prompt;                 // tokens the model was given (after any turns were dropped)
    int n_cached;                 // of them, reused from the KV cache
    double prompt_ms, predicted_ms;
    double started, decode_started;   // now_ms() when it took its slot, and when its prompt was in
    int most_slots;               // the most slots (its own included) one forward pass of it ran for
    unsigned long id;
    long created;
    int client_gone;
    int head_sent;                // the status line is out (a half-closed client is answered without Content-Length)
} Generation;

static const char *finish_reason(const Choice *c) {
    if (strcmp(c->stop_type, "limit") == 0) return "length";
    if (strcmp(c->stop_type, "abort") == 0) return "abort";
    if (strcmp(c->stop_type, "tool_calls") == 0) return "tool_calls";
    return "stop";
}

static int total_predicted(const Generation *g) {
    int n = 0;
    for (int i = 0; i < g->n_choices; i++) n += g->choices[i].n_predicted;
    return n;
}

// A token's text for log-probabilities: its piece, with its bytes.
static void logprob_token_json(Text *out, const Server *server, int token, int with_id) {
    int length;
    const char *bytes = token_bytes(server, -1, token, &length);
    if (with_id) text_printf(out, "\"id\":%d,", token);
    text_puts(out, "\"token\":");
    text_json_string(out, bytes, (size_t)length);
    text_puts(out, ",\"bytes\":[");
    for (int i = 0; i < length; i++) text_printf(out, "%s%d", i ? "," : "", (unsigned char)bytes[i]);
    text_puts(out, "]");
}

static void logprob_value(Text *out, float logprob) { text_printf(out, "%.6g", isfinite(logprob) ? logprob : -9999.0f); }

// Items [from, to) of a choice's log-probabilities in the request's API's form.
static void logprobs_json(Text *out, const Server *server, const JobSpec *spec, const LogprobList *l, int from, int to) {
    if (spec->api == API_COMPLETIONS) {   // {"tokens":[], "token_logprobs":[], "top_logprobs":[{}], "text_offset":[]}
        text_puts(out, "{\"tokens\":[");
        for (int i = from; i < to; i++) {
            int length;
            const char *bytes = token_bytes(server, -1, l->items[i].chosen.token, &length);
            if (i > from) text_puts(out, ",");
            text_json_string(out, bytes, (size_t)length);
        }
        text_puts(out, "],\"token_logprobs\":[");
        for (int i = from; i < to; i++) { if (i > from) text_puts(out, ","); logprob_value(out, l->items[i].chosen.logprob); }
        text_puts(out, "],\"top_logprobs\":[");
        for (int i = from; i < to; i++) {
            text_puts(out, i > from ? ",{" : "{");
            for (int k = 0; k < l->items[i].n_top; k++) {
                int length;
                const char *bytes = token_bytes(server, -1, l->items[i].top[k].token, &length);
                if (k) text_puts(out, ",");
                text_json_string(out, bytes, (size_t)length);
                text_puts(out, ":");
                logprob_value(out, l->items[i].top[k].logprob);
            }
            text_puts(out, "}");
        }
        text_puts(out, "]}");
        return;
    }
    int llama = spec->api == API_LLAMA;
    if (!llama) text_puts(out, "{\"content\":");
    text_puts(out, "[");
    for (int i = from; i < to; i++) {
        const StepLogprobs *s = &l->items[i];
        text_puts(out, i > from ? ",{" : "{");
        logprob_token_json(out, server, s->chosen.token, llama);
        text_puts(out, ",\"logprob\":");
        logprob_value(out, s->chosen.logprob);
        text_puts(out, ",\"top_logprobs\":[");
        for (int k = 0; k < s->n_top; k++) {
            text_puts(out, k ? ",{" : "{");
            logprob_token_json(out, server, s->top[k].token, llama);
            text_puts(out, ",\"logprob\":");
            logprob_value(out, s->top[k].logprob);
            text_puts(out, "}");
        }
        text_puts(out, "]}");
    }
    text_puts(out, "]");
    if (!llama) text_puts(out, "}");
}

static void timings_json(Text *out, const Generation *g) {
    int predicted = total_predicted(g), evaluated = g->n_prompt - g->n_cached;
    text_printf(out, "{\"prompt_n\":%d,\"prompt_ms\":%.3f,\"prompt_per_second\":%.2f,\"cache_n\":%d,"
                     "\"predicted_n\":%d,\"predicted_ms\":%.3f,\"predicted_per_second\":%.2f}",
                evaluated, g->prompt_ms, evaluated / (g->prompt_ms > 0 ? g->prompt_ms : 1e-3) * 1000, g->n_cached,
                predicted, g->predicted_ms, predicted / (g->predicted_ms > 0 ? g->predicted_ms : 1e-3) * 1000);
}

static void usage_json(Text *out, const Generation *g) {
    int predicted = total_predicted(g);
    text_printf(out, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":%d}}", g->n_prompt, predicted, g->n_prompt + predicted, g->n_cached);
}

// The opening of an OpenAI object: id, object, created, model.
static void openai_head(Text *out, const Server *server, const Generation *g, const JobSpec *spec, int chunk) {
    const char *object = spec->api == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    text_printf(out, "{\"id\":\"%s-%lu\",\"object\":\"%s\",\"created\":%ld,\"model\":",
                spec->api == API_CHAT ? "chatcmpl" : "cmpl", g->id, object, g->created);
    text_json_cstring(out, server->model_name);
    text_puts(out, ",\"system_fingerprint\":\"edge-llm\"");
}

// A reply's text split as llama.cpp's deepseek reasoning format does: what
// <think>...</think> (at the start) holds is reasoning, the rest content.
static void split_reasoning(const JobSpec *spec, const char *text, size_t length, size_t *reasoning_from, size_t *reasoning_to,
                            size_t *content_from) {
    *reasoning_from = *reasoning_to = *content_from = 0;
    if (spec->reasoning_format == REASONING_NONE) return;
    size_t i = 0;
    while (i < length && isspace((unsigned char)text[i])) i++;
    if (length - i < 7 || memcmp(text + i, "<think>", 7) != 0) return;
    *reasoning_from = i + 7;
    const char *close = strstr(text + i + 7, "</think>");
    *reasoning_to = close ? (size_t)(close - text) : length;
    *content_from = close ? (size_t)(close - text) + 8 : length;
    while (*content_from < length && isspace((unsigned char)text[*content_from])) (*content_from)++;
}

// The tool calls of a choice, as OpenAI's message.tool_calls (with index in a stream's delta).
static void tool_calls_json(Text *out, const Choice *c, int with_index) {
    text_puts(out, "\"tool_calls\":[");
    for (int i = 0; i < c->n_calls; i++) {
        text_puts(out, i ? ",{" : "{");
        if (with_index) text_printf(out, "\"index\":%d,", i);
        text_printf(out, "\"id\":\"%s\",\"type\":\"function\",\"function\":{\"name\":", c->calls[i].id);
        text_json_cstring(out, c->calls[i].name);
        text_puts(out, ",\"arguments\":");
        text_json_cstring(out, c->calls[i].arguments);
        text_puts(out, "}}");
    }
    text_puts(out, "]");
}

// The chat message of a finished choice: content (null when only calls), reasoning_content, tool_calls.
static void chat_message_json(Text *out, const JobSpec *spec, const Choice *c) {
    size_t r0, r1, from;
    split_reasoning(spec, c->content.data, c->content.length, &r0, &r1, &from);
    text_puts(out, "{\"role\":\"assistant\",\"content\":");
    if (c->n_calls > 0 && c->content.length - from == 0) text_puts(out, "null");
    else text_json_string(out, c->content.data + from, c->content.length - from);
    if (r1 > r0 || from > 0) { text_puts(out, ",\"reasoning_content\":"); text_json_string(out, c->content.data + r0, r1 - r0); }
    if (c->n_calls > 0) { text_puts(out, ","); tool_calls_json(out, c, 0); }
    text_puts(out, "}");
}

// llama.cpp's /completion answer (and its final event, with empty content).
static void llama_answer_json(Text *out, const Server *server, const Generation *g, const JobSpec *spec, const Choice *c, int streamed) {
    text_puts(out, "{\"index\":");
    text_printf(out, "%d,\"content\":", c->index);
    if (streamed) text_puts(out, "\"\"");
    else text_json_string(out, c->content.data, c->content.length);
    text_puts(out, ",\"model\":");
    text_json_cstring(out, server->model_name);
    text_printf(out, ",\"stop\":true,\"stop_type\":\"%s\",\"stopping_word\":", strcmp(c->stop_type, "tool_calls") == 0 ? "eos" : c->stop_type);
    text_json_cstring(out, c->stopping_word ? c->stopping_word : "");
    text_printf(out, ",\"tokens_predicted\":%d,\"tokens_evaluated\":%d,\"tokens_cached\":%d,\"truncated\":%s,\"timings\":",
                c->n_predicted, g->n_prompt, g->n_cached, spec->n_prompt_given > g->n_prompt ? "true" : "false");
    timings_json(out, g);
    if (spec->sampling.want_logprobs && !streamed) {
        text_puts(out, ",\"completion_probabilities\":");
        logprobs_json(out, server, spec, &c->logprobs, 0, c->logprobs.count);
    }
    text_puts(out, "}");
}

// The whole answer, when not streaming.
static void answer_json(Text *out, const Server *server, const Generation *g, const JobSpec *spec) {
    if (spec->api == API_LLAMA) {
        if (g->n_choices == 1) { llama_answer_json(out, server, g, spec, &g->choices[0], 0); return; }
        text_puts(out, "[");
        for (int i = 0; i < g->n_choices; i++) { if (i) text_puts(out, ","); llama_answer_json(out, server, g, spec, &g->choices[i], 0); }
        text_puts(out, "]");
        return;
    }
    openai_head(out, server, g, spec, 0);
    text_puts(out, ",\"choices\":[");
    for (int i = 0; i < g->n_choices; i++) {
        const Choice *c = &g->choices[i];
        text_printf(out, "%s{\"index\":%d,", i ? "," : "", i);
        if (spec->api == API_COMPLETIONS) {
            text_puts(out, "\"text\":");
            text_json_string(out, c->content.data, c->content.length);
        } else {
            text_puts(out, "\"message\":");
            chat_message_json(out, spec, c);
        }
        text_puts(out, ",\"logprobs\":");
        if (spec->sampling.want_logprobs) logprobs_json(out, server, spec, &c->logprobs, 0, c->logprobs.count);
        else text_puts(out, "null");
        text_printf(out, ",\"finish_reason\":\"%s\"}", finish_reason(c));
    }
    text_puts(out, "],");
    usage_json(out, g);
    text_puts(out, "}");
}

// One streamed piece of a choice (final: its last event, with the finish reason).
static void event_json(Text *out, const Server *server, const Generation *g, const JobSpec *spec, Choice *c,
                       const char *piece, size_t length, int final) {
    int n_logprobs = spec->sampling.want_logprobs ? c->logprobs.count - c->logprobs.streamed : 0;
    if (spec->api == API_LLAMA) {
        if (final) { llama_answer_json(out, server, g, spec, c, 1); return; }
        text_printf(out, "{\"index\":%d,\"content\":", c->index);
        text_json_string(out, piece, length);
        text_printf(out, ",\"stop\":false,\"tokens_predicted\":%d", c->n_predicted);
        if (n_logprobs > 0) {
            text_puts(out, ",\"completion_probabilities\":");
            logprobs_json(out, server, spec, &c->logprobs, c->logprobs.streamed, c->logprobs.count);
            c->logprobs.streamed = c->logprobs.count;
        }
        text_puts(out, "}");
        return;
    }
    openai_head(out, server, g, spec, 1);
    text_printf(out, ",\"choices\":[{\"index\":%d,", c->index);
    if (spec->api == API_COMPLETIONS) {
        text_puts(out, "\"text\":");
        text_json_string(out, piece, length);
    } else {
        text_puts(out, "\"delta\":{");
        int comma = 0;
        if (!c->role_sent) { text_puts(out, "\"role\":\"assistant\""); comma = 1; c->role_sent = 1; }
        if (final && c->n_calls > 0) { text_puts(out, comma ? "," : ""); tool_calls_json(out, c, 1); comma = 1; }
        if (length > 0 || (!final && !comma)) {
            // inside <think> the piece is reasoning (streamed text never spans the close: it is held back)
            size_t r0, r1, from;
            split_reasoning(spec, c->content.data, c->sent, &r0, &r1, &from);
            int thinking = spec->reasoning_format != REASONING_NONE && r0 > 0 && from == c->sent && r1 == c->sent;
            text_puts(out, comma ? "," : "");
            text_puts(out, thinking ? "\"reasoning_content\":" : "\"content\":");
            text_json_string(out, piece, length);
        }
        text_puts(out, "}");
    }
    text_puts(out, ",\"logprobs\":");
    if (n_logprobs > 0) {
        logprobs_json(out, server, spec, &c->logprobs, c->logprobs.streamed, c->logprobs.count);
        c->logprobs.streamed = c->logprobs.count;
    } else {
        text_puts(out, "null");
    }
    text_printf(out, final ? ",\"finish_reason\":\"%s\"}]" : ",\"finish_reason\":null}]", final ? finish_reason(c) : "");
    if (final && !spec->include_usage) { text_puts(out, ","); usage_json(out, g); }
    text_puts(out, "}");
}

// Bytes at the end of content that must wait for the next token before being
// streamed: the start of a stop word, of a tool call's trigger, of a
// <think> or </think> tag, or of a UTF-8 character.
static size_t held_back(const Server *server, const Choice *c, const JobSpec *spec) {
    const char *text = c->content.data;
    size_t length = c->content.length, hold = 0;
    for (int i = 0; i < spec->n_stop; i++) {
        size_t word = strlen(spec->stop[i]);
        for (size_t k = word - 1; k > hold; k--)
            if (k <= length && memcmp(text + length - k, spec->stop[i], k) == 0) { hold = k; break; }
    }
    static const char *const tags[] = { "<think>", "</think>" };
    for (int t = 0; t < 2 && spec->api == API_CHAT && spec->reasoning_format != REASONING_NONE; t++)
        for (size_t k = strlen(tags[t]); k > hold; k--)
            if (k <= length && memcmp(text + length - k, tags[t], k) == 0) { hold = k; break; }
    if (spec->n_tools > 0) {   // calls are sent whole at the end, never as content
        if (c->tool_start >= 0 || (spec->lazy_grammar && c->tool_start == -1 && tool_trigger_pending(server->tool_format, text, length)))
            hold = length - (c->tool_start >= 0 ? (size_t)c->tool_start : 0);
        if (!spec->lazy_grammar) hold = length;
    }
    for (size_t k = 1; k <= 3 && k <= length; k++)   // a character's start that the next token may finish
        if (utf8_next((const unsigned char *)text + length - k, k) == 0 && k > hold) hold = k;
    return hold > length ? length : hold;
}

// ----------------------------------------------------------------------------
// The client: gone, or only half-closed? A waiting client sends nothing, so
// its socket turns readable only when it closes its side (a FIN: either it
// left, or it half-closed and still reads). From then on the answer's status
// line is sent at once (the answer itself follows without Content-Length):
// a client that left resets the connection at that write, which the next
// check sees; one that half-closed reads its answer.

typedef struct {
    int fd;
    const char *cors_origin;
    int stream;
    int answer_early;             // 0: an embedding, whose handler answers: a half-close is not probed
    int fin_seen;
} ClientWatch;

static int client_gone(ClientWatch *w, Generation *g) {
    if (g->client_gone) return 1;
    struct pollfd p = { w->fd, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return g->client_gone = 1;
    char byte;
    ssize_t n = recv(w->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return g->client_gone = 1;
    if (n != 0 || w->fin_seen) return 0;
    w->fin_seen = 1;
    if (!w->answer_early) return 0;
    const Reply to = { w->fd, w->cors_origin, 0 };
    if (!g->head_sent) {   // a probe that is also the answer's start
        if (send_head(&to, 200, w->stream ? "text/event-stream" : "application/json; charset=utf-8", -1, NULL) != 0) return g->client_gone = 1;
        g->head_sent = 1;
    } else if (w->stream && send_all(w->fd, ": waiting\n\n", 11) != 0) {   // an SSE comment: clients skip it
        return g->client_gone = 1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// The worker: slots and continuous batching. Each slot has its own KV cache
// (a sequence of runq's forward_rows) and runs one job at a time. A step is
// one forward pass: the next token of every decoding slot, then as much of
// waiting prompts as fills the batch (MAX_BATCH rows), so the weights are
// read once for them all and a running stream waits at most one chunk while
// a new prompt goes in. After the pass each slot takes its rows: a decoding
// slot samples its next token (and streams it); a prompt that ended starts
// its choices. A slot's choices (n > 1) decode in turn, on that slot, from
// the prompt's logits. A request waits in the queue while every slot is busy.

enum SlotPhase { PHASE_IDLE, PHASE_PREFILL, PHASE_DECODE };

// A slot: a KV cache (sequence `id` of the runtime), the tokens it holds
// (prompt caching reuses their longest common prefix with a new prompt), and
// the job it runs, as a state the steps advance: prefilling tokens, or
// decoding a choice whose next token waits to be fed.
struct Slot {
    int id;
    TokenList cached;             // the tokens whose keys and values its cache holds, position by position
    int busy;                     // read under the server's lock (/slots, /metrics)
    unsigned long job_id;         // the job running or last run
    int n_prompt, n_decoded;      // of that job
    unsigned long last_used;      // when a job last came: the least recently used idle slot goes first
    // the worker's alone:
    int phase;                    // SlotPhase
    Job *job;
    Generation *g;
    ClientWatch watch;
    const int *feed;              // PHASE_PREFILL: tokens[cached.count..feed_count) still to go in
    int feed_count;
    int after;                    // AfterPrefill
    int choice;                   // the choice decoding (choices go in turn)
    int pos, pending;             // PHASE_DECODE: the token fed next, at position pos
    int limit;                    // tokens the choice may take
    float *logits;                // (vocab_size,) the choice's next-token logits, which sampling changes
    float *prompt_logits;         // (vocab_size,) after the prompt: every choice starts from them
    double shift_started;         // a context shift's prefill: when it began, and the tokens it reused
    int shift_reused;
};

struct Job {
    JobSpec spec;
    int fd;
    const char *cors_origin;
    int finished;                 // the worker is done with it (or refused it: rejected)
    int rejected;                 // shutting down before its turn: answer 503
    int embedding;                // /embedding, /v1/embeddings: mean-pooled hidden states instead of text
    float *embedding_out;         // (dim,) written by the worker
    Job *next;
};

static int shutting_down(Server *server) {
    pthread_mutex_lock(&server->lock);
    int stop = server->shutting_down;
    pthread_mutex_unlock(&server->lock);
    return stop;
}

static void pause_as_slow_board(const Server *server) {
    if (server->settings.token_delay_ms > 0) usleep((useconds_t)server->settings.token_delay_ms * 1000);
}

// Tokens a slot's cache and prompt share from the start.
static int common_prefix(const TokenList *cached, const int *tokens, int n) {
    int k = 0;
    while (k < cached->count && k < n && cached->ids[k] == tokens[k]) k++;
    return k;
}

// What a slot's prefill leads to when its last chunk is in.
enum AfterPrefill { AFTER_PROMPT, AFTER_SHIFT, AFTER_NEXT_CHOICE, AFTER_EMBEDDING };

// Feed tokens[from..n) into the slot (its cache holding tokens[0..from)); the
// steps take it a chunk at a time.
static void start_prefill(Slot *slot, const int *tokens, int from, int n, int after) {
    slot->cached.count = from;
    slot->feed = tokens;
    slot->feed_count = n;
    slot->after = after;
    slot->phase = PHASE_PREFILL;
}

// The choice now decoding starts from the prompt's logits.
static void start_decoding(Server *server, Slot *slot) {
    JobSpec *spec = &slot->job->spec;
    Choice *c = &slot->g->choices[slot->choice];
    start_choice(server, spec, c, slot->choice);
    memcpy(slot->logits, slot->prompt_logits, (size_t)server->transformer.config.vocab_size * sizeof(float));
    slot->pos = spec->prompt.count;
    slot->cached.count = slot->pos;
    // -1: until the context is full; a longer reply asked for goes on past it by shifting the context
    slot->limit = spec->max_tokens >= 0 ? spec->max_tokens : server->transformer.state.cache_len - slot->pos;
    slot->phase = PHASE_DECODE;
}

// A choice whose sequence filled the context goes on with less of it: a
// chat drops its oldest turns (the system prompt kept) and, when the reply
// itself has outgrown the room, the older part of the reply; /completion
// with n_keep keeps its first n_keep tokens and the later half of the rest
// (llama.cpp's context shift). The kept tokens are prefilled again, the
// cache's common prefix reused (runq's cache holds rotated keys: moving them
// would mean rotating them again; a re-prefill costs what docs/SERVER.md
// measures). Returns 0 when nothing can go (the choice ends there).
static int shift_context(Server *server, Slot *slot) {
    JobSpec *spec = &slot->job->spec;
    Choice *c = &slot->g->choices[slot->choice];
    int context = server->transformer.state.cache_len;
    int n_reply = c->tokens.count - spec->prompt.count, head, tail_from;
    if (spec->api == API_CHAT) {
        fit_conversation(server, spec, n_reply + context / 4);
        head = spec->prompt.count;
        tail_from = c->tokens.count - n_reply;
    } else {
        if (!spec->has_n_keep) return 0;
        head = spec->n_keep < 0 || spec->n_keep > context / 2 ? context / 2 : spec->n_keep;
        tail_from = head;
    }
    int available = c->tokens.count - tail_from, room = context - head;
    int tail = head + available <= context - context / 4 ? available : room / 2;
    if (room < 4 || tail <= 0) return 0;
    TokenList kept = { 0 };
    const int *front = spec->api == API_CHAT ? spec->prompt.ids : c->tokens.ids;
    for (int i = 0; i < head; i++) push_token(&kept, front[i]);
    for (int i = c->tokens.count - tail; i < c->tokens.count; i++) push_token(&kept, c->tokens.ids[i]);
    free(c->tokens.ids);
    c->tokens = kept;   // the prefill reads it; decoding appends to it only after
    int from = common_prefix(&slot->cached, kept.ids, kept.count);
    if (from >= kept.count) from = kept.count - 1;
    slot->shift_started = now_ms();
    slot->shift_reused = from;
    start_prefill(slot, kept.ids, from, kept.count, AFTER_SHIFT);
    return 1;
}

// Stream what is safe to send of a choice (everything, at the end); a failed write means the client left.
static void stream_pending(Job *job, const Server *server, Generation *g, Choice *c, int final) {
    const JobSpec *spec = &job->spec;
    if (!spec->stream || g->client_gone) return;
    size_t end = final ? c->content.length : c->content.length - held_back(server, c, spec);
    if (end < c->sent) end = c->sent;   // finish_choice may have cut the calls (and a blank before them) off
    Text event = text_new();
    // split at <think>/</think>: one event per side, so each is content or reasoning
    while (end > c->sent && !g->client_gone) {
        size_t r0, r1, from, cut = end;
        split_reasoning(spec, c->content.data, end, &r0, &r1, &from);
        if (spec->api == API_CHAT && r0 > 0) {
            size_t marks[] = { r0, r1, from };
            for (int k = 0; k < 3; k++) if (marks[k] > c->sent && marks[k] < cut) cut = marks[k];
            if (c->sent < r0) { c->sent = r0; continue; }          // the <think> tag itself is not sent
            if (c->sent >= r1 && c->sent < from) { c->sent = from; continue; }   // nor </think> and its blank
        }
        event.length = 0;
        event_json(&event, server, g, spec, c, c->content.data + c->sent, cut - c->sent, 0);
        c->sent = cut;
        if (send_event(job->fd, &event) != 0) g->client_gone = 1;
    }
    if (final && !g->client_gone) {
        event.length = 0;
        event_json(&event, server, g, spec, c, "", 0, 1);
        if (send_event(job->fd, &event) != 0) g->client_gone = 1;
    }
    text_free(&event);
}

// The job's answer (or the end of its stream), the counters, and its
// connection thread woken; the slot is free again, its cache kept.
static void finish_job(Server *server, Slot *slot) {
    Job *job = slot->job;
    Generation *g = slot->g;
    const Reply to = { job->fd, job->cors_origin, 0 };
    if (!job->embedding) {
        g->predicted_ms = g->decode_started > 0 ? now_ms() - g->decode_started : 0;
        if (job->spec.stream) {
            if (job->spec.api != API_LLAMA && !g->client_gone && job->spec.include_usage) {   // a last chunk: usage alone
                Text usage = text_new();
                openai_head(&usage, server, g, &job->spec, 1);
                text_puts(&usage, ",\"choices\":[],");
                usage_json(&usage, g);
                text_puts(&usage, "}");
                if (send_event(job->fd, &usage) != 0) g->client_gone = 1;
                text_free(&usage);
            }
            if (job->spec.api != API_LLAMA && !g->client_gone && send_all(job->fd, "data: [DONE]\n\n", 14) != 0) g->client_gone = 1;
        } else if (!g->client_gone) {
            Text answer = text_new();
            answer_json(&answer, server, g, &job->spec);
            // a half-closed client already has the status line: the body alone, ended by the close
            int failed = g->head_sent ? send_all(job->fd, answer.data, answer.length) : send_json(&to, 200, &answer);
            if (failed) g->client_gone = 1;
            text_free(&answer);
        }
    }
    int predicted = total_predicted(g);
    double predicted_ms = g->predicted_ms;
    fprintf(stderr, "server: job %lu on slot %d: prompt %d tokens (%d cached, %d in the cache at the end), %d predicted, stop %s, "
            "%.1f tok/s, passes of up to %d slots%s\n", g->id, slot->id, job->spec.prompt.count, g->n_cached, slot->cached.count,
            predicted, g->n_choices ? g->choices[0].stop_type : "none", predicted / (g->predicted_ms > 0 ? g->predicted_ms : 1e-3) * 1000,
            g->most_slots,
            g->client_gone ? " (client gone: generation stopped)" : "");
    for (int i = 0; i < g->n_choices; i++) free_choice(&g->choices[i]);
    free(g);
    pthread_mutex_lock(&server->lock);
    server->metrics.predicted_tokens += (unsigned long)predicted;
    server->metrics.predicted_ms += predicted_ms;
    slot->busy = 0;
    slot->job = NULL;
    slot->g = NULL;
    slot->phase = PHASE_IDLE;
    job->finished = 1;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

// After the choice now decoding ended: its calls and last events, then the
// next choice (its prompt prefilled again if a context shift rewrote the
// cache), or the job's end.
static void advance(Server *server, Slot *slot);

static void next_choice(Server *server, Slot *slot) {
    JobSpec *spec = &slot->job->spec;
    if (++slot->choice >= slot->g->n_choices) { finish_job(server, slot); return; }
    int have = common_prefix(&slot->cached, spec->prompt.ids, spec->prompt.count);
    if (have < spec->prompt.count) { start_prefill(slot, spec->prompt.ids, have, spec->prompt.count, AFTER_NEXT_CHOICE); return; }
    start_decoding(server, slot);
    advance(server, slot);
}

static void end_choice(Server *server, Slot *slot) {
    Choice *c = &slot->g->choices[slot->choice];
    slot->g->predicted_ms = now_ms() - slot->g->decode_started;   // so far: a stream's final event carries it
    finish_choice(server, &slot->job->spec, c);
    stream_pending(slot->job, server, slot->g, c, 1);
    pthread_mutex_lock(&server->lock);
    slot->n_decoded += c->n_predicted;
    pthread_mutex_unlock(&server->lock);
    next_choice(server, slot);
}

// A decoding choice with fresh logits: its next token sampled, taken and
// streamed, to be fed by the next step; or the choice ends (length, end
// token, stop word, client gone) or its context shifts.
static void advance(Server *server, Slot *slot) {
    Job *job = slot->job;
    JobSpec *spec = &job->spec;
    Generation *g = slot->g;
    Choice *c = &g->choices[slot->choice];
    if (slot->limit >= 0 && c->n_predicted >= slot->limit) { c->stop_type = "limit"; end_choice(server, slot); return; }
    if (client_gone(&slot->watch, g) || shutting_down(server)) { c->stop_type = "abort"; end_choice(server, slot); return; }
    if (slot->pos >= server->transformer.state.cache_len) {   // no room for the next token: shift, or end here
        if (!shift_context(server, slot)) {
            c->stop_type = g->client_gone || shutting_down(server) ? "abort" : "limit";
            end_choice(server, slot);
        }
        return;
    }
    int next = choice_sample(server, spec, c, slot->logits);
    if (next < 0) { c->stop_type = "eos"; end_choice(server, slot); return; }   // the grammar allows nothing more
    if (choice_accept(server, spec, c, next)) { end_choice(server, slot); return; }
    stream_pending(job, server, g, c, 0);
    if (slot->limit >= 0 && c->n_predicted >= slot->limit) { c->stop_type = "limit"; end_choice(server, slot); return; }
    slot->pending = next;
}

// A job stopped (its client left, or the server stops): the choice decoding
// and those not begun end "abort", with what they have; an embedding is not
// answered.
static void stop_job(Server *server, Slot *slot) {
    Generation *g = slot->g;
    if (slot->job->embedding) { slot->job->embedding = -1; finish_job(server, slot); return; }
    int decoding = slot->phase == PHASE_DECODE || (slot->phase == PHASE_PREFILL && slot->after == AFTER_SHIFT);
    if (decoding && slot->choice < g->n_choices) {
        Choice *c = &g->choices[slot->choice];
        c->stop_type = "abort";
        finish_choice(server, &slot->job->spec, c);
        stream_pending(slot->job, server, g, c, 1);
        pthread_mutex_lock(&server->lock);
        slot->n_decoded += c->n_predicted;
        pthread_mutex_unlock(&server->lock);
        slot->choice++;
    }
    for (; slot->choice < g->n_choices; slot->choice++) {
        start_choice(server, &slot->job->spec, &g->choices[slot->choice], slot->choice);
        g->choices[slot->choice].stop_type = "abort";
    }
    finish_job(server, slot);
}

// A slot's prefill is in: what it was for goes on. logits: the last token's (none for an embedding).
static void prefill_done(Server *server, Slot *slot, const float *logits) {
    size_t vocab_bytes = (size_t)server->transformer.config.vocab_size * sizeof(float);
    Generation *g = slot->g;
    JobSpec *spec = &slot->job->spec;
    switch (slot->after) {
    case AFTER_EMBEDDING: {
        float *sum = slot->job->embedding_out;
        int dim = server->transformer.config.dim;
        double norm = 0;
        for (int k = 0; k < dim; k++) norm += (double)sum[k] * sum[k];
        norm = sqrt(norm);
        for (int k = 0; k < dim; k++) sum[k] = norm > 0 ? (float)(sum[k] / norm) : 0.0f;
        finish_job(server, slot);
        return;
    }
    case AFTER_PROMPT:
        g->decode_started = now_ms();
        g->prompt_ms = g->decode_started - g->started;
        pthread_mutex_lock(&server->lock);
        slot->n_prompt = spec->prompt.count;
        server->metrics.prompt_tokens += (unsigned long)(spec->prompt.count - g->n_cached);
        server->metrics.prompt_tokens_cached += (unsigned long)g->n_cached;
        server->metrics.prompt_ms += g->prompt_ms;
        pthread_mutex_unlock(&server->lock);
        /* fall through */
    case AFTER_NEXT_CHOICE:
        memcpy(slot->prompt_logits, logits, vocab_bytes);
        start_decoding(server, slot);
        advance(server, slot);
        return;
    case AFTER_SHIFT:
        memcpy(slot->logits, logits, vocab_bytes);
        slot->pos = slot->feed_count;
        slot->phase = PHASE_DECODE;
        fprintf(stderr, "server: slot %d: context shift: kept %d of %d tokens, %d reused, %d prefilled again in %.1f ms\n",
                slot->id, slot->feed_count, server->transformer.state.cache_len, slot->shift_reused,
                slot->feed_count - slot->shift_reused, now_ms() - slot->shift_started);
        pthread_mutex_lock(&server->lock);
        server->metrics.context_shifts++;
        pthread_mutex_unlock(&server->lock);
        advance(server, slot);
        return;
    }
}

// A job into its slot: a generation's stream head sent, its prompt's cached
// prefix reused (all but the last token, whose logits are needed) and the
// rest queued for prefill; an embedding's whole input.
static void start_job(Slot *slot) {
    Job *job = slot->job;
    JobSpec *spec = &job->spec;
    Generation *g = slot->g;
    int n = spec->prompt.count;
    slot->watch = (ClientWatch){ job->fd, job->cors_origin, spec->stream, !job->embedding, 0 };
    slot->choice = 0;
    g->started = now_ms();
    if (job->embedding) { start_prefill(slot, spec->prompt.ids, 0, n, AFTER_EMBEDDING); return; }
    const Reply to = { job->fd, job->cors_origin, 0 };
    if (spec->stream && send_head(&to, 200, "text/event-stream", -1, NULL) != 0) g->client_gone = 1;
    g->head_sent = spec->stream;
    g->n_choices = spec->n_choices;
    int from = spec->cache_prompt ? common_prefix(&slot->cached, spec->prompt.ids, n) : 0;
    if (from >= n) from = n - 1;
    g->n_prompt = n;
    g->n_cached = from;
    start_prefill(slot, spec->prompt.ids, from, n, AFTER_PROMPT);
}

// The idle slot for a job: the one whose cache shares the longest prefix
// with its prompt, when that prefix is more than a quarter of the prompt
// (llama.cpp's similarity rule, at a quarter where it has half: a BOS and a
// few words are not worth the conversation another slot's cache holds);
// else the least recently used, which keeps the others' caches for the
// conversations they hold. With cache_prompt false too: its prefill writes
// that prefix again, so the conversation the slot held keeps its cache.
// Under the lock.
static Slot *choose_slot(Server *server, const Job *job) {
    Slot *best = NULL, *oldest = NULL;
    int best_shared = 0, n = job->spec.prompt.count;
    for (int i = 0; i < server->n_slots; i++) {
        Slot *s = &server->slots[i];
        if (s->busy) continue;
        int shared = common_prefix(&s->cached, job->spec.prompt.ids, n);
        if (4 * shared > n && shared > best_shared) { best = s; best_shared = shared; }
        if (!oldest || s->last_used < oldest->last_used) oldest = s;
    }
    return best ? best : oldest;
}

// One step: the batch (every decoding slot's next token, then prompts'
// chunks, the oldest job first, as far as MAX_BATCH rows go), one forward
// pass, each slot's rows taken. Returns 0 when no slot had work.
static int run_step(Server *server) {
    Transformer *t = &server->transformer;
    int tokens[MAX_BATCH], seqs[MAX_BATCH], positions[MAX_BATCH], logit_rows[MAX_BATCH];
    int first_row[MAX_BATCH], n_rows[MAX_BATCH], logit_of[MAX_BATCH];   // by slot (n_slots <= MAX_BATCH)
    int n = 0, n_logits = 0;
    for (int i = 0; i < server->n_slots; i++) {
        Slot *s = &server->slots[i];
        n_rows[i] = 0;
        logit_of[i] = -1;
        if (s->phase != PHASE_DECODE) continue;
        first_row[i] = n;
        n_rows[i] = 1;
        tokens[n] = s->pending; seqs[n] = s->id; positions[n] = s->pos;
        logit_of[i] = n_logits;
        logit_rows[n_logits++] = n++;
    }
    for (;;) {   // prompts: the slot that took its job first goes first
        Slot *next = NULL;
        for (int i = 0; i < server->n_slots; i++) {
            Slot *s = &server->slots[i];
            if (s->phase == PHASE_PREFILL && n_rows[i] == 0 && (!next || s->last_used < next->last_used)) next = s;
        }
        if (!next || n >= MAX_BATCH) break;
        if (client_gone(&next->watch, next->g) || shutting_down(server)) { stop_job(server, next); continue; }
        int from = next->cached.count, chunk = next->feed_count - from;
        if (chunk > MAX_BATCH - n) chunk = MAX_BATCH - n;
        first_row[next->id] = n;
        n_rows[next->id] = chunk;
        for (int k = 0; k < chunk; k++) { tokens[n] = next->feed[from + k]; seqs[n] = next->id; positions[n++] = from + k; }
        if (from + chunk == next->feed_count && next->after != AFTER_EMBEDDING) {
            logit_of[next->id] = n_logits;
            logit_rows[n_logits++] = n - 1;
        }
    }
    if (n == 0) return 0;
    int slots_in_pass = 0;
    for (int i = 0; i < server->n_slots; i++) slots_in_pass += n_rows[i] > 0;
    for (int i = 0; i < server->n_slots; i++)
        if (n_rows[i] > 0 && server->slots[i].g->most_slots < slots_in_pass) server->slots[i].g->most_slots = slots_in_pass;
    const float *logits = forward_rows(t, tokens, seqs, positions, n, logit_rows, n_logits);
    pause_as_slow_board(server);
    size_t vocab = (size_t)t->config.vocab_size;
    int dim = t->config.dim;
    for (int i = 0; i < server->n_slots; i++) {
        Slot *s = &server->slots[i];
        if (n_rows[i] == 0) continue;
        const float *row_logits = logit_of[i] >= 0 ? logits + (size_t)logit_of[i] * vocab : NULL;
        if (s->phase == PHASE_DECODE) {
            push_token(&s->cached, s->pending);
            s->pos++;
            memcpy(s->logits, row_logits, vocab * sizeof(float));
            advance(server, s);
            continue;
        }
        for (int k = 0; k < n_rows[i]; k++) {
            if (s->after == AFTER_EMBEDDING) {   // the mean of the last hidden state after the final norm
                float *row = t->state.xb2;   // free until the next pass
                rmsnorm(row, t->state.x + (size_t)(first_row[i] + k) * dim, t->weights.norm.data, dim, t->config.norm_eps);
                for (int d = 0; d < dim; d++) s->job->embedding_out[d] += row[d];
            }
            push_token(&s->cached, tokens[first_row[i] + k]);
        }
        if (s->cached.count == s->feed_count) prefill_done(server, s, row_logits);
    }
    return 1;
}

// Jobs into idle slots (under the lock); refused when shutting down.
static int admit_jobs(Server *server, Slot **admitted) {
    int n = 0;
    while (server->queue_head) {
        Job *job = server->queue_head;
        Slot *slot = server->shutting_down ? NULL : choose_slot(server, job);
        if (!server->shutting_down && !slot) break;
        server->queue_head = job->next;
        if (!server->queue_head) server->queue_tail = NULL;
        server->queued--;
        if (!slot) { job->rejected = 1; job->finished = 1; pthread_cond_broadcast(&server->changed); continue; }
        Generation *g = xcalloc(1, sizeof *g, "generation");
        g->created = (long)time(NULL);
        g->id = ++server->next_id;
        slot->g = g;
        slot->job = job;
        slot->busy = 1;
        slot->job_id = g->id;
        slot->n_prompt = slot->n_decoded = 0;
        slot->last_used = ++server->admissions;
        admitted[n++] = slot;
    }
    return n;
}

static void *worker_loop(void *raw) {
    Server *server = raw;
    Slot *admitted[MAX_BATCH];
    for (;;) {
        pthread_mutex_lock(&server->lock);
        int n_admitted, busy;
        for (;;) {
            n_admitted = admit_jobs(server, admitted);
            busy = 0;
            for (int i = 0; i < server->n_slots; i++) busy += server->slots[i].busy;
            if (busy || (server->shutting_down && !server->queue_head)) break;
            pthread_cond_wait(&server->changed, &server->lock);
        }
        pthread_mutex_unlock(&server->lock);
        if (!busy) break;   // shutting down, nothing left
        for (int i = 0; i < n_admitted; i++) start_job(admitted[i]);
        run_step(server);
    }
    return NULL;
}

// Queue a job and wait for the worker to finish it: 0, or 503 when the queue is full or the server stopping.
static int submit_and_wait(Server *server, Job *job) {
    pthread_mutex_lock(&server->lock);
    server->metrics.requests++;
    if (server->shutting_down || server->queued >= server->settings.queue_capacity) {
        server->metrics.requests_failed++;
        pthread_mutex_unlock(&server->lock);
        return 503;
    }
    if (server->queue_tail) server->queue_tail->next = job;
    else server->queue_head = job;
    server->queue_tail = job;
    server->queued++;
    pthread_cond_broadcast(&server->changed);
    while (!job->finished) pthread_cond_wait(&server->changed, &server->lock);
    pthread_mutex_unlock(&server->lock);
    return job->rejected ? 503 : 0;
}

// ----------------------------------------------------------------------------
// Routes

static void handle_health(Server *server, const Reply *to) {
    pthread_mutex_lock(&server->lock);
    int queued = server->queued;
    pthread_mutex_unlock(&server->lock);
    Text body = text_new();
    text_printf(&body, "{\"status\":\"ok\",\"queued\":%d}", queued);
    send_json(to, 200, &body);
    text_free(&body);
}

static void handle_models(Server *server, const Reply *to) {
    Text body = text_new();
    text_puts(&body, "{\"object\":\"list\",\"data\":[{\"id\":");
    text_json_cstring(&body, server->model_name);
    const Config *c = &server->transformer.config;
    text_printf(&body, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"edge-llm\","
                       "\"meta\":{\"n_vocab\":%d,\"n_ctx_train\":%d,\"n_ctx\":%d,\"n_embd\":%d,\"n_layer\":%d}}]}",
                server->started, c->vocab_size, c->seq_len, server->transformer.state.cache_len, c->dim, c->n_layers);
    send_json(to, 200, &body);
    text_free(&body);
}

// llama.cpp's /props: what a client reads before it talks to the model.
static void handle_props(Server *server, const Reply *to) {
    Text body = text_new();
    text_printf(&body, "{\"default_generation_settings\":{\"n_ctx\":%d,\"params\":{\"temperature\":0.8,\"top_k\":40,\"top_p\":0.95,"
                       "\"min_p\":0.05,\"n_predict\":-1}},\"total_slots\":%d,\"model_path\":", server->transformer.state.cache_len,
                server->n_slots);
    text_json_cstring(&body, server->settings.model_path);
    text_puts(&body, ",\"model_alias\":");
    text_json_cstring(&body, server->model_name);
    text_puts(&body, ",\"chat_template\":");
    text_json_cstring(&body, server->has_chat_template ? server->chat_template->name : "");
    text_printf(&body, ",\"n_ctx_train\":%d,\"n_vocab\":%d,\"bos_token\":", server->transformer.config.seq_len,
                server->transformer.config.vocab_size);
    int length;
    const char *bos = token_bytes(server, -1, server->tokenizer.bos_id, &length);
    text_json_string(&body, bos, (size_t)length);
    text_puts(&body, ",\"eos_token\":");
    const char *eos = token_bytes(server, -1, server->tokenizer.eos_id, &length);
    text_json_string(&body, eos, (size_t)length);
    text_puts(&body, ",\"modalities\":{\"vision\":false,\"audio\":false},\"build_info\":\"edge-llm\"}");
    send_json(to, 200, &body);
    text_free(&body);
}

static void handle_slots(Server *server, const Reply *to) {
    Text body = text_new();
    text_puts(&body, "[");
    pthread_mutex_lock(&server->lock);
    for (int i = 0; i < server->n_slots; i++) {
        const Slot *s = &server->slots[i];
        text_printf(&body, "%s{\"id\":%d,\"n_ctx\":%d,\"is_processing\":%s,\"id_task\":%lu,\"n_past\":%d,\"n_prompt_tokens\":%d,"
                           "\"n_decoded\":%d}", i ? "," : "", i, server->transformer.state.cache_len, s->busy ? "true" : "false",
                    s->job_id, s->cached.count, s->n_prompt, s->n_decoded);
    }
    pthread_mutex_unlock(&server->lock);
    text_puts(&body, "]");
    send_json(to, 200, &body);
    text_free(&body);
}

// Prometheus' text format, under llama.cpp's metric names where it has them.
static void handle_metrics(Server *server, const Reply *to) {
    pthread_mutex_lock(&server->lock);
    Metrics m = server->metrics;
    int queued = server->queued, busy = 0, cached = 0;
    Text per_slot = text_new();   // each slot's own gauges, labelled by its id
    text_puts(&per_slot, "# HELP edge_llm:slot_busy Whether the slot runs a request.\n# TYPE edge_llm:slot_busy gauge\n");
    for (int i = 0; i < server->n_slots; i++) text_printf(&per_slot, "edge_llm:slot_busy{slot=\"%d\"} %d\n", i, server->slots[i].busy);
    text_puts(&per_slot, "# HELP edge_llm:slot_kv_cache_tokens Tokens in the slot's KV cache.\n# TYPE edge_llm:slot_kv_cache_tokens gauge\n");
    for (int i = 0; i < server->n_slots; i++)
        text_printf(&per_slot, "edge_llm:slot_kv_cache_tokens{slot=\"%d\"} %d\n", i, server->slots[i].cached.count);
    text_puts(&per_slot, "# HELP edge_llm:slot_tokens_decoded Tokens the slot's current or last request generated.\n"
                         "# TYPE edge_llm:slot_tokens_decoded gauge\n");
    for (int i = 0; i < server->n_slots; i++) text_printf(&per_slot, "edge_llm:slot_tokens_decoded{slot=\"%d\"} %d\n", i, server->slots[i].n_decoded);
    for (int i = 0; i < server->n_slots; i++) { busy += server->slots[i].busy; cached += server->slots[i].cached.count; }
    pthread_mutex_unlock(&server->lock);
    Text body = text_new();
    struct { const char *name, *type, *help; double value; } rows[] = {
        { "llamacpp:prompt_tokens_total", "counter", "Prompt tokens processed (not counting those reused from the cache).", (double)m.prompt_tokens },
        { "llamacpp:prompt_seconds_total", "counter", "Prompt processing time.", m.prompt_ms / 1000 },
        { "llamacpp:tokens_predicted_total", "counter", "Tokens generated.", (double)m.predicted_tokens },
        { "llamacpp:tokens_predicted_seconds_total", "counter", "Generation time.", m.predicted_ms / 1000 },
        { "llamacpp:prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.", m.prompt_ms > 0 ? m.prompt_tokens / (m.prompt_ms / 1000) : 0 },
        { "llamacpp:predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.", m.predicted_ms > 0 ? m.predicted_tokens / (m.predicted_ms / 1000) : 0 },
        { "llamacpp:requests_processing", "gauge", "Requests being processed (slots busy).", (double)busy },
        { "llamacpp:requests_deferred", "gauge", "Requests waiting in the queue.", (double)queued },
        { "llamacpp:kv_cache_tokens", "gauge", "Tokens in the KV caches of all slots.", (double)cached },
        { "edge_llm:requests_total", "counter", "Generation and embedding requests received.", (double)m.requests },
        { "edge_llm:requests_rejected_total", "counter", "Requests refused with 503 (queue full, shutting down).", (double)m.requests_failed },
        { "edge_llm:prompt_tokens_cached_total", "counter", "Prompt tokens reused from the KV cache.", (double)m.prompt_tokens_cached },
        { "edge_llm:context_shifts_total", "counter", "Times a full context dropped old turns and went on.", (double)m.context_shifts },
        { "edge_llm:slots_busy", "gauge", "Slots generating now.", (double)busy },
        { "edge_llm:slots_total", "gauge", "Slots.", (double)server->n_slots },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        text_printf(&body, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", rows[i].name, rows[i].help, rows[i].name, rows[i].type,
                    rows[i].name, rows[i].value);
    text_append(&body, per_slot.data, per_slot.length);
    text_free(&per_slot);
    send_response(to, 200, "text/plain; version=0.0.4; charset=utf-8", body.data, body.length, NULL);
    text_free(&body);
}

// The body's fields as a JSON object, or a 400 already sent (*body untouched then).
static int parse_object_body(const Request *r, const Reply *to, const char *const *fields, Json *body) {
    char syntax[128];
    if (!json_parse_fields(r->body, (size_t)r->content_length, fields, body, syntax, sizeof syntax)) {
        send_error(to, 400, syntax, NULL);
        return 0;
    }
    if (body->type == JSON_OBJECT) return 1;
    json_free(body);
    send_error(to, 400, "the body must be a JSON object", NULL);
    return 0;
}

// {"content": "text", "add_special": false} -> {"tokens": [ids]}
static void handle_tokenize(Server *server, const Request *r, const Reply *to) {
    static const char *const fields[] = { "content", "add_special", NULL };
    Json body;
    if (!parse_object_body(r, to, fields, &body)) return;
    const Json *content = json_get(&body, "content");
    int add_special = 0;
    FieldError e;
    if (!content || content->type != JSON_STRING || strlen(content->string) != content->length) {
        send_error(to, 400, "'content' must be a string (without NUL characters)", NULL);
    } else if (!field_bool(&body, "add_special", &add_special, &e)) {
        send_error(to, 400, e.message, NULL);
    } else {
        TokenList tokens = { 0 };
        push_encoded(&tokens, &server->tokenizer, content->string, add_special);
        Text out = text_new();
        text_puts(&out, "{\"tokens\":[");
        for (int i = 0; i < tokens.count; i++) text_printf(&out, "%s%d", i ? "," : "", tokens.ids[i]);
        text_puts(&out, "]}");
        send_json(to, 200, &out);
        text_free(&out);
        free(tokens.ids);
    }
    json_free(&body);
}

// Token ids as text, each decoded after the one before (BOS and EOS mark ends: no text of their own).
static void detokenize(const Server *server, const int *ids, int n, Text *text, int spell_specials) {
    for (int i = 0; i < n; i++) {
        int id = ids[i], prev = i ? ids[i - 1] : server->tokenizer.bos_id;
        if (!spell_specials && (id == server->tokenizer.bos_id || id == server->tokenizer.eos_id)) continue;
        if (spell_specials && server->token_texts[id].control) { text_puts(text, server->tokenizer.vocab[id]); continue; }
        int length;
        const char *bytes = token_bytes(server, prev, id, &length);
        text_append(text, bytes, (size_t)length);
    }
}

// {"tokens": [ids]} -> {"content": "text"}
static void handle_detokenize(Server *server, const Request *r, const Reply *to) {
    static const char *const fields[] = { "tokens", NULL };
    Json body;
    if (!parse_object_body(r, to, fields, &body)) return;
    const Json *tokens = json_get(&body, "tokens");
    int vocab_size = server->transformer.config.vocab_size, ok = tokens && tokens->type == JSON_ARRAY;
    for (int i = 0; ok && i < tokens->count; i++) {
        double id = tokens->items[i].number;
        ok = tokens->items[i].type == JSON_NUMBER && id == floor(id) && id >= 0 && id < vocab_size;
    }
    if (!ok) {
        char message[128];
        snprintf(message, sizeof message, "'tokens' must be an array of token ids in [0, %d)", vocab_size);
        send_error(to, 400, message, NULL);
    } else {
        int *ids = xcalloc((size_t)tokens->count + 1, sizeof(int), "tokens");
        for (int i = 0; i < tokens->count; i++) ids[i] = (int)tokens->items[i].number;
        Text text = text_new(), out = text_new();
        detokenize(server, ids, tokens->count, &text, 0);
        text_puts(&out, "{\"content\":");
        text_json_string(&out, text.data, text.length);
        text_puts(&out, "}");
        send_json(to, 200, &out);
        text_free(&text);
        text_free(&out);
        free(ids);
    }
    json_free(&body);
}

// {"messages": [...]} -> {"prompt": the text the template renders, special tokens spelled}
static void handle_apply_template(Server *server, const Request *r, const Reply *to) {
    Json body;
    if (!parse_object_body(r, to, generation_fields, &body)) return;
    JobSpec job = { .api = API_CHAT };
    FieldError e;
    Text tools_description = text_new();
    job.conversation.enable_thinking = -1;
    if (parse_tools(&body, &job, server, &tools_description, &e) && parse_messages(&body, &job, server, &tools_description, &e)) {
        render_conversation(server, &job.conversation, 0, &job.prompt);
        Text text = text_new(), out = text_new();
        detokenize(server, job.prompt.ids, job.prompt.count, &text, 1);
        text_puts(&out, "{\"prompt\":");
        text_json_string(&out, text.data, text.length);
        text_puts(&out, "}");
        send_json(to, 200, &out);
        text_free(&text);
        text_free(&out);
    } else {
        send_error(to, 400, e.message, NULL);
    }
    text_free(&tools_description);
    free_job_spec(&job);
    json_free(&body);
}

static void handle_generation(Server *server, const Request *r, const Reply *to, int api) {
    Job job = { .fd = to->fd, .cors_origin = to->cors_origin };
    FieldError e;
    if (!parse_job(r, api, server, &job.spec, &e)) {
        pthread_mutex_lock(&server->lock);
        server->metrics.requests++;
        server->metrics.requests_failed++;
        pthread_mutex_unlock(&server->lock);
        send_error(to, 400, e.message, NULL);
        return;
    }
    if (submit_and_wait(server, &job) == 503)
        send_error(to, 503, "the server is busy: the queue is full (or the server is stopping)", "Retry-After: 1\r\n");
    free_job_spec(&job.spec);
}

// /v1/embeddings {"input": text | [texts] | [ids] | [[ids]]} and llama.cpp's /embedding {"content": text}.
static void handle_embeddings(Server *server, const Request *r, const Reply *to, int openai) {
    static const char *const fields[] = { "input", "content", "encoding_format", NULL };
    Json body;
    if (!parse_object_body(r, to, fields, &body)) return;
    const Json *input = field(&body, openai ? "input" : "content"), *format = field(&body, "encoding_format");
    const char *why = NULL;
    int n_inputs = 0;
    const Json *inputs[64];
    if (format && (format->type != JSON_STRING || strcmp(format->string, "float") != 0)) why = "'encoding_format' must be \"float\"";
    else if (!input) why = openai ? "'input' must be a string, an array of strings or token ids" : "'content' must be a string";
    else if (input->type == JSON_STRING || (input->type == JSON_ARRAY && input->count > 0 && input->items[0].type == JSON_NUMBER)) inputs[n_inputs++] = input;
    else if (input->type == JSON_ARRAY && input->count > 0 && input->count <= 64) for (int i = 0; i < input->count; i++) inputs[n_inputs++] = &input->items[i];
    else why = "'input' must be a string, an array of at most 64 strings, or token ids";
    Text out = text_new();
    int dim = server->transformer.config.dim, total_tokens = 0;
    if (openai) text_puts(&out, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; !why && i < n_inputs; i++) {
        Job job = { .fd = to->fd, .cors_origin = to->cors_origin, .embedding = 1 };
        const Json *item = inputs[i];
        if (item->type == JSON_STRING && strlen(item->string) == item->length) {
            push_encoded(&job.spec.prompt, &server->tokenizer, item->string, 1);
        } else if (item->type == JSON_ARRAY && item->count > 0) {
            for (int k = 0; k < item->count && !why; k++) {
                const Json *id = &item->items[k];
                if (id->type != JSON_NUMBER || id->number != floor(id->number) || id->number < 0 || id->number >= server->transformer.config.vocab_size)
                    why = "token ids in 'input' must be integers in the vocabulary";
                else push_token(&job.spec.prompt, (int)id->number);
            }
        } else {
            why = "each input must be a non-empty string or array of token ids";
        }
        if (!why && job.spec.prompt.count > server->transformer.state.cache_len) why = "an input is longer than the context (--ctx)";
        if (!why) {
            job.embedding_out = xcalloc((size_t)dim, sizeof(float), "embedding");
            if (submit_and_wait(server, &job) == 503) why = "busy";
            else if (job.embedding < 0) why = "stopped";
            else {
                total_tokens += job.spec.prompt.count;
                text_puts(&out, i ? "," : "");
                text_puts(&out, openai ? "{\"object\":\"embedding\",\"index\":" : "{\"index\":");
                text_printf(&out, "%d,\"embedding\":[", i);
                for (int k = 0; k < dim; k++) text_printf(&out, "%s%.7g", k ? "," : "", job.embedding_out[k]);
                text_puts(&out, "]}");
            }
            free(job.embedding_out);
        }
        free(job.spec.prompt.ids);
    }
    if (why && strcmp(why, "busy") == 0) send_error(to, 503, "the server is busy: the queue is full (or the server is stopping)", "Retry-After: 1\r\n");
    else if (why && strcmp(why, "stopped") == 0) {}   // the client left, or the server stops: nobody to answer
    else if (why) send_error(to, 400, why, NULL);
    else {
        if (openai) {
            text_puts(&out, "],\"model\":");
            text_json_cstring(&out, server->model_name);
            text_printf(&out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", total_tokens, total_tokens);
        }
        send_json(to, 200, &out);
    }
    text_free(&out);
    json_free(&body);
}

enum RouteKind { ROUTE_PAGE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_PROPS, ROUTE_SLOTS, ROUTE_METRICS, ROUTE_TOKENIZE,
                 ROUTE_DETOKENIZE, ROUTE_APPLY_TEMPLATE, ROUTE_GENERATE, ROUTE_EMBEDDING, ROUTE_EMBEDDINGS };

typedef struct {
    const char *method, *path;
    int needs_key;                // with --api-key
    int kind;                     // RouteKind
    int api;                      // generation routes: Api
} Route;

static const Route routes[] = {
    { "GET", "/", 0, ROUTE_PAGE, 0 },
    { "GET", "/health", 0, ROUTE_HEALTH, 0 },
    { "GET", "/v1/health", 0, ROUTE_HEALTH, 0 },
    { "GET", "/v1/models", 1, ROUTE_MODELS, 0 },
    { "GET", "/models", 1, ROUTE_MODELS, 0 },
    { "GET", "/props", 1, ROUTE_PROPS, 0 },
    { "GET", "/slots", 1, ROUTE_SLOTS, 0 },
    { "GET", "/metrics", 1, ROUTE_METRICS, 0 },
    { "POST", "/tokenize", 1, ROUTE_TOKENIZE, 0 },
    { "POST", "/detokenize", 1, ROUTE_DETOKENIZE, 0 },
    { "POST", "/apply-template", 1, ROUTE_APPLY_TEMPLATE, 0 },
    { "POST", "/completion", 1, ROUTE_GENERATE, API_LLAMA },
    { "POST", "/completions", 1, ROUTE_GENERATE, API_LLAMA },
    { "POST", "/v1/completions", 1, ROUTE_GENERATE, API_COMPLETIONS },
    { "POST", "/v1/chat/completions", 1, ROUTE_GENERATE, API_CHAT },
    { "POST", "/chat/completions", 1, ROUTE_GENERATE, API_CHAT },
    { "POST", "/embedding", 1, ROUTE_EMBEDDING, 0 },
    { "POST", "/embeddings", 1, ROUTE_EMBEDDINGS, 0 },
    { "POST", "/v1/embeddings", 1, ROUTE_EMBEDDINGS, 0 },
};
#define N_ROUTES (int)(sizeof routes / sizeof routes[0])

static int authorized(const Server *server, const Request *r) {
    const char *key = server->settings.api_key;
    if (!key) return 1;
    const char *given = r->authorization;
    if (!given || strncasecmp(given, "Bearer ", 7) != 0) return 0;
    given += 7;
    size_t n = strlen(key);
    if (strlen(given) != n) return 0;
    unsigned char difference = 0;   // compared in constant time: no key prefix leaks through timing
    for (size_t i = 0; i < n; i++) difference |= (unsigned char)(given[i] ^ key[i]);
    return difference == 0;
}

// The origin CORS allows for this request: --cors-origin's value ("*", or
// the one origin allowed, or a list of them separated by commas).
static const char *cors_origin(const Server *server, const Request *r) {
    const char *allowed = server->settings.cors_origin;
    if (!allowed) return NULL;
    if (strcmp(allowed, "*") == 0) return "*";
    if (!r->origin) return NULL;
    size_t n = strlen(r->origin);
    for (const char *s = allowed; *s;) {
        const char *comma = strchr(s, ',');
        size_t length = comma ? (size_t)(comma - s) : strlen(s);
        if (length == n && strncmp(s, r->origin, n) == 0) return r->origin;
        s += length + (comma ? 1 : 0);
    }
    return NULL;
}

static void dispatch(Server *server, const Request *r, int fd) {
    Reply to = { fd, cors_origin(server, r), strcmp(r->method, "HEAD") == 0 };
    const char *method = to.head_only ? "GET" : r->method;
    const Route *route = NULL;
    char allow[64] = "";
    for (int i = 0; i < N_ROUTES; i++) {
        if (strcmp(routes[i].path, r->path) != 0) continue;
        snprintf(allow, sizeof allow, "%s", strcmp(routes[i].method, "GET") == 0 ? "GET, HEAD, OPTIONS" : "POST, OPTIONS");
        if (strcmp(routes[i].method, method) == 0) route = &routes[i];
    }
    if (!route && allow[0] && strcmp(r->method, "OPTIONS") == 0) {   // a browser's preflight
        char headers[256];
        snprintf(headers, sizeof headers, "Allow: %s\r\n%s", allow, to.cors_origin
                 ? "Access-Control-Allow-Methods: GET, POST, HEAD, OPTIONS\r\nAccess-Control-Allow-Headers: Content-Type, Authorization\r\n"
                   "Access-Control-Max-Age: 600\r\n" : "");
        send_response(&to, 204, "text/plain", "", 0, headers);
        return;
    }
    if (!route && allow[0]) {
        char header[96];
        snprintf(header, sizeof header, "Allow: %s\r\n", allow);
        send_error(&to, 405, "method not allowed on this path", header);
        return;
    }
    if (!route) { send_error(&to, 404, "no such route", NULL); return; }
    if (route->needs_key && !authorized(server, r)) {
        send_error(&to, 401, "missing or wrong API key: send Authorization: Bearer KEY", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    switch (route->kind) {
    case ROUTE_PAGE: send_response(&to, 200, "text/html; charset=utf-8", chat_page, strlen(chat_page), NULL); break;
    case ROUTE_HEALTH: handle_health(server, &to); break;
    case ROUTE_MODELS: handle_models(server, &to); break;
    case ROUTE_PROPS: handle_props(server, &to); break;
    case ROUTE_SLOTS: handle_slots(server, &to); break;
    case ROUTE_METRICS: handle_metrics(server, &to); break;
    case ROUTE_TOKENIZE: handle_tokenize(server, r, &to); break;
    case ROUTE_DETOKENIZE: handle_detokenize(server, r, &to); break;
    case ROUTE_APPLY_TEMPLATE: handle_apply_template(server, r, &to); break;
    case ROUTE_GENERATE: handle_generation(server, r, &to, route->api); break;
    case ROUTE_EMBEDDING: handle_embeddings(server, r, &to, 0); break;
    case ROUTE_EMBEDDINGS: handle_embeddings(server, r, &to, 1); break;
    }
}

// ----------------------------------------------------------------------------
// Connections: a thread each, at most MAX_CONNECTIONS, and at most
// --max-conn-per-address from one client address, so slow or idle sockets
// from one place cannot take every thread.

typedef struct {
    Server *server;
    int fd;
    uint32_t address;
} Connection;

static void connection_ended(Server *server, uint32_t address) {
    pthread_mutex_lock(&server->lock);
    server->connections--;
    for (int i = 0; i < MAX_CONNECTIONS; i++)
        if (server->per_address[i].open > 0 && server->per_address[i].address == address) { server->per_address[i].open--; break; }
    int idle = server->connections == 0;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    if (idle) malloc_trim(0);   // the memory requests took goes back to the system
}

static void *serve_connection(void *raw) {
    Connection connection = *(Connection *)raw;
    free(raw);
    Server *server = connection.server;
    int fd = connection.fd;
    // a client that stops reading cannot hold the worker longer than this per write
    struct timeval send_timeout = { server->settings.timeout_ms / 1000, (server->settings.timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

    Request *request = xcalloc(1, sizeof *request, "request");
    double now = now_ms();
    RequestSource source = { .fd = fd, .head_deadline_ms = now + server->settings.head_timeout_ms,
                             .deadline_ms = now + server->settings.timeout_ms };
    HttpError e = read_request(&source, request);
    if (e.status == NO_REQUEST) {
        request->body_unread = 0;
    } else if (e.status) {
        const Reply to = { fd, NULL, 0 };
        send_error(&to, e.status, e.message, NULL);
        fprintf(stderr, "server: %d %s\n", e.status, e.message);
    } else {
        dispatch(server, request, fd);
    }
    close_gracefully(fd, request->body_unread);
    free(request->body);
    free(request);
    connection_ended(server, connection.address);
    return NULL;
}

// Room for one more connection from address: 0 (and the reason) when there is none.
static int admit(Server *server, uint32_t address, const char **why) {
    pthread_mutex_lock(&server->lock);
    int slot = -1, free_slot = -1;
    for (int i = 0; i < MAX_CONNECTIONS; i++) {
        if (server->per_address[i].open > 0 && server->per_address[i].address == address) slot = i;
        else if (server->per_address[i].open == 0 && free_slot < 0) free_slot = i;
    }
    int ok = server->connections < MAX_CONNECTIONS;
    *why = "too many connections";
    if (ok && slot >= 0 && server->per_address[slot].open >= server->settings.max_per_address) {
        ok = 0;
        *why = "too many connections from this address";
    }
    if (ok) {
        if (slot < 0) { slot = free_slot; server->per_address[slot].address = address; }
        server->per_address[slot].open++;
        server->connections++;
    }
    pthread_mutex_unlock(&server->lock);
    return ok;
}

static void start_connection(Server *server, int fd, uint32_t address) {
    const char *why;
    if (!admit(server, address, &why)) {
        struct timeval quick = { 0, 200000 };   // the refusal must not block the accepting thread
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &quick, sizeof quick);
        const Reply to = { fd, NULL, 0 };
        send_error(&to, 503, why, "Retry-After: 1\r\n");
        close(fd);
        return;
    }
    Connection *connection = xcalloc(1, sizeof *connection, "connection");
    *connection = (Connection){ server, fd, address };
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 512 * 1024);
    if (pthread_create(&thread, &attributes, serve_connection, connection) != 0) {
        free(connection);
        const Reply to = { fd, NULL, 0 };
        send_error(&to, 503, "cannot start a thread", "Retry-After: 1\r\n");
        close(fd);
        connection_ended(server, address);
    }
    pthread_attr_destroy(&attributes);
}

// ----------------------------------------------------------------------------
// Listening, and the shutdown Ctrl-C or SIGTERM starts

static int listen_on(const char *host, int port) {
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) die("--host %s is not an IPv4 address", host);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("cannot create a socket: %s", strerror(errno));
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) die("cannot bind %s:%d: %s", host, port, strerror(errno));
    if (listen(fd, 256) != 0) die("cannot listen on %s:%d: %s", host, port, strerror(errno));
    return fd;
}

static void accept_until_stopped(Server *server, int listen_fd) {
    while (!stop_requested) {
        struct pollfd p = { listen_fd, POLLIN, 0 };
        if (poll(&p, 1, 200) <= 0) continue;   // a timeout or a signal: look at the flag again
        struct sockaddr_in peer;
        socklen_t peer_length = sizeof peer;
        int fd = accept(listen_fd, (struct sockaddr *)&peer, &peer_length);
        if (fd >= 0) start_connection(server, fd, peer.sin_addr.s_addr);
        else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) usleep(10000);   // out of descriptors: do not spin
    }
}

// Stop taking connections, stop the running generation at its next token,
// refuse what is queued (503), and wait for the connection threads to finish
// (a slow client for at most the timeout). Returns the connections still open.
static int shut_down(Server *server, int listen_fd, pthread_t worker) {
    close(listen_fd);
    pthread_mutex_lock(&server->lock);
    server->shutting_down = 1;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    pthread_join(worker, NULL);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += server->settings.timeout_ms / 1000 + 2;
    pthread_mutex_lock(&server->lock);
    while (server->connections > 0)
        if (pthread_cond_timedwait(&server->changed, &server->lock, &deadline) != 0) break;
    int left = server->connections;
    pthread_mutex_unlock(&server->lock);
    if (left > 0) fprintf(stderr, "server: %d connections still open at exit\n", left);
    return left;
}

// ----------------------------------------------------------------------------
// Command line

static void usage(void) {
    fprintf(stderr,
        "Usage:   server <checkpoint> [options]\n"
        "Example: server models/tinystories-edge.q4.bin --port 8080\n"
        "Options:\n"
        "  --host <ipv4>     address to listen on, default 127.0.0.1 (loopback only)\n"
        "  --port <int>      default 8080 (0: any free port, printed at start)\n"
        "  --api-key <key>   API routes need Authorization: Bearer <key>\n"
        "  -T <int>          threads for the model, default: the big cores it may use\n"
        "  -k <f16|q8>       KV cache type, default f16 (q8: int8, half the memory)\n"
        "  -z <path>         tokenizer.bin overriding the checkpoint's\n"
        "  --chat-template <name> llama2, llama3, chatml or zephyr, default: the checkpoint's\n"
        "  --ctx <int>       positions of the KV cache (prompt and reply), default: the model's context, at most 4096\n"
        "  --parallel <int>  slots: requests decoded together in one batch, each with its own --ctx cache,\n"
        "                    default: as many as fit in half the free memory, at most 4 (at most 16)\n"
        "  --queue <int>     requests waiting while every slot is busy before 503, default 16\n"
        "  --timeout <ms>    to read a request's body and for each write, default 10000\n"
        "  --head-timeout <ms> to read a request's line and headers, default 3000\n"
        "  --max-conn-per-address <int> connections open at once from one address, default 8\n"
        "  --cors-origin <origin> allow pages from this origin (a list with commas, or *), default none\n"
        "  --token-delay <ms> pause after each forward pass (tests: a slow board), default 0\n");
    exit(EXIT_FAILURE);
}

static Settings parse_settings(int argc, char **argv) {
    Settings s = { .host = "127.0.0.1", .port = 8080, .n_threads = big_cores(),
                   .queue_capacity = 16, .timeout_ms = 10000, .head_timeout_ms = HEAD_TIMEOUT_MS, .max_per_address = 8 };
    if (argc < 2 || argv[1][0] == '-') usage();
    s.model_path = argv[1];
    for (int i = 2; i < argc; i += 2) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value) die("flag %s needs a value", flag);
        if (strcmp(flag, "--host") == 0) s.host = value;
        else if (strcmp(flag, "--port") == 0) s.port = (int)parse_long(flag, value, 0, 65535);
        else if (strcmp(flag, "--api-key") == 0) s.api_key = value;
        else if (strcmp(flag, "-T") == 0) s.n_threads = (int)parse_long(flag, value, 1, 1024);
        else if (strcmp(flag, "-z") == 0) s.tokenizer_path = value;
        else if (strcmp(flag, "--chat-template") == 0) s.chat_template = value;
        else if (strcmp(flag, "-k") == 0) s.kv_type = parse_kv_type(value);
        else if (strcmp(flag, "--ctx") == 0) s.context = (int)parse_long(flag, value, 2, INT_MAX);
        else if (strcmp(flag, "--parallel") == 0) s.parallel = (int)parse_long(flag, value, 1, MAX_SLOTS);
        else if (strcmp(flag, "--queue") == 0) s.queue_capacity = (int)parse_long(flag, value, 0, 4096);
        else if (strcmp(flag, "--timeout") == 0) s.timeout_ms = (int)parse_long(flag, value, 100, 3600000);
        else if (strcmp(flag, "--head-timeout") == 0) s.head_timeout_ms = (int)parse_long(flag, value, 100, 3600000);
        else if (strcmp(flag, "--max-conn-per-address") == 0) s.max_per_address = (int)parse_long(flag, value, 1, MAX_CONNECTIONS);
        else if (strcmp(flag, "--cors-origin") == 0) s.cors_origin = value;
        else if (strcmp(flag, "--token-delay") == 0) s.token_delay_ms = (int)parse_long(flag, value, 0, 10000);
        else die("unknown flag '%s' (run server alone for its usage)", flag);
    }
    if (s.api_key && !s.api_key[0]) die("--api-key must not be empty");
    if (s.cors_origin && (!s.cors_origin[0] || strpbrk(s.cors_origin, "\r\n")))
        die("--cors-origin must be an origin (https://host:port), a list of them with commas, or *");
    return s;
}

// Each token's text, once: the grammar's mask and the log-probabilities read it.
static TokenText *build_token_texts(const Tokenizer *tok) {
    TokenText *texts = xcalloc((size_t)tok->vocab_size, sizeof(TokenText), "token texts");
    for (int id = 0; id < tok->vocab_size; id++) {
        int byte = -1;
        for (int b = 0; b < 256 && byte < 0; b++) if (tok->byte_tokens[b] == id) byte = b;
        if (byte >= 0) {
            texts[id] = (TokenText){ (const char *)tok->byte_pieces + byte * 2, 1, 0 };
        } else if (tok->kind == TOKENIZER_BYTE_LEVEL) {
            texts[id] = (TokenText){ tok->vocab[id], tok->lengths[id], tok->scores[id] == -INFINITY };
        } else {
            const char *piece = decode(tok, -1, id);
            texts[id] = (TokenText){ piece, (int)strlen(piece), tok->scores[id] == -INFINITY };
        }
    }
    return texts;
}

// What the chat routes need of the tokenizer and template (the fuzz target calls it too).
static void prepare_chat(Server *server, uint32_t recorded_template) {
    server->end_of_turn = chat_end_of_turn(&server->tokenizer, server->chat_template);
    server->has_chat_template = recorded_template != 0 || server->chat_template != &chat_templates[CHAT_LLAMA2];
    server->tool_format = choose_tool_format(&server->tokenizer, server->chat_template);
    server->tool_calls_token = piece_lookup(&server->tokenizer, "[TOOL_CALLS]", 12);
    server->token_texts = build_token_texts(&server->tokenizer);
}

// Slots when --parallel is not given: as many KV caches of `positions` as
// fit in half the memory free beside the weights (runq's chat sizes its one
// cache the same way), at most 4 (beyond, a step's attention grows while
// the weights' reads it shares do not), at least 1.
static int default_slots(const Transformer *t, int positions, char *why, size_t why_size) {
    size_t available = available_memory(), per_slot = kv_bytes_per_position(t) * (size_t)positions;
    if (available == 0 || available <= t->file_size) {
        snprintf(why, why_size, "free memory unknown");
        return 1;
    }
    size_t fits = (available - t->file_size) / 2 / per_slot;
    char cache[32], free_memory[32];
    snprintf(why, why_size, "%s of KV cache each, %s free", format_bytes(cache, per_slot), format_bytes(free_memory, available));
    return fits >= 4 ? 4 : fits < 1 ? 1 : (int)fits;
}

static void load_model(Server *server) {
    const Settings *s = &server->settings;
    open_checkpoint(&server->transformer, s->model_path);
    int seq_len = server->transformer.config.seq_len;
    if (s->context > seq_len) die("--ctx %d is beyond the model's context of %d positions", s->context, seq_len);
    server->transformer.kv_type = s->kv_type;
    int positions = s->context ? s->context : seq_len < 4096 ? seq_len : 4096;
    char why[128] = "--parallel";
    server->n_slots = s->parallel ? s->parallel : default_slots(&server->transformer, positions, why, sizeof why);
    server->transformer.n_seqs = server->n_slots;
    prepare_run(&server->transformer, positions, s->n_threads);
    print_memory_plan(&server->transformer);
    fprintf(stderr, "server: %d slot%s of %d positions (%s)\n", server->n_slots, server->n_slots > 1 ? "s" : "", positions, why);
    server->slots = xcalloc((size_t)server->n_slots, sizeof(Slot), "slots");
    for (int i = 0; i < server->n_slots; i++) {
        server->slots[i].id = i;
        server->slots[i].logits = xcalloc((size_t)server->transformer.config.vocab_size, sizeof(float), "logits");
        server->slots[i].prompt_logits = xcalloc((size_t)server->transformer.config.vocab_size, sizeof(float), "logits");
    }
    build_tokenizer(&server->tokenizer, &server->transformer, s->tokenizer_path);
    server->chat_template = choose_chat_template(&server->tokenizer, s->chat_template, server->transformer.config.chat_template,
                                                 s->model_path);
    prepare_chat(server, s->chat_template || server->transformer.config.chat_template);
    const char *slash = strrchr(s->model_path, '/');
    snprintf(server->model_name, sizeof server->model_name, "%s", slash ? slash + 1 : s->model_path);
}

static void install_signal_handlers(void) {
    struct sigaction stop = { 0 }, ignore = { 0 };
    stop.sa_handler = request_stop;          // no SA_RESTART: poll returns at once
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    ignore.sa_handler = SIG_IGN;             // a client gone mid-write is an error return, not a death
    sigaction(SIGPIPE, &ignore, NULL);
}

#ifndef FUZZING
int main(int argc, char **argv) {
    static Server server;   // large (a request's worth of state): not on the stack
    server.settings = parse_settings(argc, argv);
    mallopt(M_ARENA_MAX, 2);   // connection threads share two arenas: memory freed after a request can go back
    load_model(&server);
    server.started = (long)time(NULL);
    pthread_mutex_init(&server.lock, NULL);
    pthread_cond_init(&server.changed, NULL);
    install_signal_handlers();

    int listen_fd = listen_on(server.settings.host, server.settings.port);
    struct sockaddr_in bound;
    socklen_t bound_length = sizeof bound;
    getsockname(listen_fd, (struct sockaddr *)&bound, &bound_length);
    fprintf(stderr, "server: %s (%s chat template%s, %d positions) on http://%s:%d/\n", server.model_name,
            server.chat_template->name, server.has_chat_template ? "" : " guessed: the page completes text", server.transformer.state.cache_len,
            server.settings.host, ntohs(bound.sin_port));

    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_loop, &server) != 0) die("cannot start the worker thread");
    accept_until_stopped(&server, listen_fd);
    fprintf(stderr, "server: stopping\n");
    if (shut_down(&server, listen_fd, worker) == 0) {   // a connection thread still running may use the model
        for (int i = 0; i < server.n_slots; i++) {
            free(server.slots[i].cached.ids);
            free(server.slots[i].logits);
            free(server.slots[i].prompt_logits);
        }
        free(server.slots);
        free(server.token_texts);
        free_tokenizer(&server.tokenizer);
        free_transformer(&server.transformer);
    }
    fprintf(stderr, "server: stopped\n");
    return 0;
}
#endif

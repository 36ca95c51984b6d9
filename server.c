/*
server.c — an HTTP server for one Edge LLM checkpoint: llama.cpp's /completion
and the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models), plus
/health, /tokenize, /detokenize and a small chat page at /.

    server model.q4.bin [--host 127.0.0.1] [--port 8080] [--api-key KEY]
                        [-T threads] [-z tokenizer.bin] [--ctx N] [--queue N]

It is runq.c's runtime and json.h's parser, POSIX sockets and pthreads: no
other library.

How a request flows: the main thread accepts a connection and hands it to a
connection thread, which reads and checks the HTTP request, parses its JSON
and tokenizes the prompt (the tokenizer is read-only, so that runs in
parallel), then puts a generation job on a bounded FIFO queue and waits. One
worker thread owns the model: it takes the jobs in order, runs each to the
end and writes the response (or its server-sent events) to the job's socket.
A full queue answers 503 with Retry-After; a client that hangs up mid-stream
makes the next write fail, which ends its generation. Every response closes
its connection (Connection: close): no keep-alive, no pipelining.

What it is not: batched (one generation at a time), TLS, or HTTP/2.
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

#include <arpa/inet.h>
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
    memcpy(t->data + t->length, s, n);
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

// ----------------------------------------------------------------------------
// The server: settings, the model, the queue

typedef struct {
    const char *model_path;
    const char *host;
    int port;
    const char *api_key;          // NULL: no authentication
    int n_threads;
    const char *tokenizer_path;   // NULL: the checkpoint's own
    int context;                  // KV cache positions: prompt + reply of one request
    int kv_type;                  // KvType (-k)
    int queue_capacity;           // jobs waiting behind the running one
    int timeout_ms;               // to read a request, and for each write to a client
    int token_delay_ms;           // tests only: a pause after each token, as on a slow board
} Settings;

typedef struct Job Job;

typedef struct {
    Settings settings;
    Transformer transformer;      // the worker's alone
    Tokenizer tokenizer;          // read-only: shared by every thread
    const ChatTemplate *chat_template;
    int end_of_turn;              // the chat template's end-of-reply token
    char model_name[256];         // the checkpoint's file name, as /v1/models lists it
    long started;                 // unix time: "created" of the model

    pthread_mutex_t lock;         // guards everything below
    pthread_cond_t changed;       // a job queued or finished, a connection ended, shutting down
    Job *queue_head, *queue_tail;
    int queued;
    int connections;              // connection threads running
    int shutting_down;
    unsigned long next_id;        // for response ids
} Server;

// ----------------------------------------------------------------------------
// HTTP: reading a request. Every failure is an HTTP status to answer with.

typedef struct {
    char head[MAX_HEADER_BYTES + 1];   // request line and headers, NUL-terminated
    size_t head_length;                // bytes received into head (may run into the body)
    size_t body_start;                 // offset of the body in head
    char *method, *target, *path;      // into head; path is target without its query
    const char *authorization;         // header value or NULL
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
    double deadline_ms;                // for the whole request: a trickling client times out too
    const char *bytes;                 // fd -1: what is left to receive
    size_t left, chunk;
} RequestSource;

static ssize_t receive_from(RequestSource *s, char *buf, size_t capacity) {
    if (s->fd >= 0) return receive(s->fd, buf, capacity, s->deadline_ms);
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
        ssize_t n = receive_from(s, r->body + have, length - have);
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
        ssize_t n = receive_from(s, r->head + r->head_length, MAX_HEADER_BYTES - r->head_length);
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
// HTTP: responses. Each one closes the connection.

static int send_head(int fd, int status, const char *content_type, long content_length, const char *extra_headers) {
    char head[512];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, status_text(status), content_type);
    if (content_length >= 0) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %ld\r\n", content_length);
    else n += snprintf(head + n, sizeof head - (size_t)n, "Cache-Control: no-cache\r\n");
    snprintf(head + n, sizeof head - (size_t)n, "Connection: close\r\n%s\r\n", extra_headers ? extra_headers : "");
    return send_all(fd, head, strlen(head));
}

static int send_response(int fd, int status, const char *content_type, const char *body, size_t length, const char *extra) {
    if (send_head(fd, status, content_type, (long)length, extra) != 0) return -1;
    return send_all(fd, body, length);
}

static int send_json(int fd, int status, const Text *json) {
    return send_response(fd, status, "application/json; charset=utf-8", json->data, json->length, NULL);
}

// The error body llama.cpp's server and OpenAI's API both send.
static void send_error(int fd, int status, const char *message, const char *extra_headers) {
    Text body = { 0 };
    const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                     : status == 503 ? "unavailable_error" : status >= 500 ? "server_error" : "invalid_request_error";
    text_printf(&body, "{\"error\":{\"code\":%d,\"type\":\"%s\",\"message\":", status, type);
    text_json_cstring(&body, message);
    text_puts(&body, "}}");
    send_response(fd, status, "application/json; charset=utf-8", body.data, body.length, extra_headers);
    text_free(&body);
}

// Server-sent events: one "data: ..." line and a blank line per event.
static int send_event(int fd, const Text *json) {
    Text event = { 0 };
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
// Generation requests: the JSON of /completion, /v1/completions and
// /v1/chat/completions into one job description. Types are checked; unknown
// fields are ignored (OpenAI clients send many); null counts as absent.

enum Api { API_LLAMA, API_COMPLETIONS, API_CHAT };

typedef struct {
    int api;                      // Api: which response format
    int stream;
    TokenList prompt;
    int max_tokens;               // -1: until the context is full
    float temperature, top_p;
    int top_k;                    // 0: off
    unsigned long long seed;
    char *stop[MAX_STOP_WORDS];   // strings that end the reply (not included in it)
    int n_stop;
} JobSpec;

typedef struct {
    char message[256];            // the reason a request is refused (400)
} FieldError;

static const Json *field(const Json *body, const char *key) {
    const Json *v = json_get(body, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

static int field_number(const Json *body, const char *key, double min, double max, double *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_NUMBER || !isfinite(v->number) || v->number < min || v->number > max) {
        snprintf(e->message, sizeof e->message, "'%s' must be a number in [%g, %g]", key, min, max);
        return 0;
    }
    *out = v->number;
    return 1;
}

static int field_integer(const Json *body, const char *key, double min, double max, double *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < min || v->number > max) {
        snprintf(e->message, sizeof e->message, "'%s' must be an integer in [%.0f, %.0f]", key, min, max);
        return 0;
    }
    *out = v->number;
    return 1;
}

static int field_bool(const Json *body, const char *key, int *out, FieldError *e) {
    const Json *v = field(body, key);
    if (!v) return 1;
    if (v->type != JSON_TRUE && v->type != JSON_FALSE) {
        snprintf(e->message, sizeof e->message, "'%s' must be true or false", key);
        return 0;
    }
    *out = v->type == JSON_TRUE;
    return 1;
}

// "stop": a string or an array of strings (both APIs accept either)
static int field_stop(const Json *body, JobSpec *job, FieldError *e) {
    const Json *v = field(body, "stop");
    if (!v) return 1;
    int n = v->type == JSON_STRING ? 1 : v->type == JSON_ARRAY ? v->count : -1;
    if (n < 0 || n > MAX_STOP_WORDS) {
        snprintf(e->message, sizeof e->message, "'stop' must be a string or an array of at most %d strings", MAX_STOP_WORDS);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        const Json *word = v->type == JSON_STRING ? v : &v->items[i];
        if (word->type != JSON_STRING || word->length > MAX_STOP_WORD_BYTES || strlen(word->string) != word->length) {
            snprintf(e->message, sizeof e->message, "'stop' entries must be strings of at most %d bytes", MAX_STOP_WORD_BYTES);
            return 0;
        }
        if (word->length == 0) continue;   // an empty stop word would stop before the first token
        job->stop[job->n_stop] = xcalloc(word->length + 1, 1, "stop word");
        memcpy(job->stop[job->n_stop++], word->string, word->length);
    }
    return 1;
}

// The sampling fields both APIs share; defaults differ (llama.cpp's: 0.8, 40, 0.95; OpenAI's: 1, off, 1).
static int parse_sampling(const Json *body, JobSpec *job, const Server *server, FieldError *e) {
    double temperature = job->temperature, top_p = job->top_p, top_k = job->top_k, seed = -1;
    double max_tokens = -1;
    const char *length_key = job->api == API_LLAMA ? "n_predict"
                           : field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (!field_number(body, "temperature", 0, 100, &temperature, e) || !field_number(body, "top_p", 0, 1, &top_p, e)
        || !field_integer(body, "top_k", 0, server->transformer.config.vocab_size, &top_k, e)
        || !field_integer(body, "seed", -1, 9007199254740991.0, &seed, e)
        || !field_integer(body, length_key, -1, INT_MAX, &max_tokens, e)
        || !field_bool(body, "stream", &job->stream, e) || !field_stop(body, job, e))
        return 0;
    // below 1e-4, logits / temperature can overflow to inf: that is greedy sampling anyway
    job->temperature = temperature < 1e-4 ? 0.0f : (float)temperature;
    job->top_p = (float)top_p;
    job->top_k = (int)top_k;
    job->max_tokens = (int)max_tokens;
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
    if (!ok) snprintf(e->message, sizeof e->message, "'prompt' must be a string or a non-empty array of token ids in [0, %d)",
                      server->transformer.config.vocab_size);
    return ok;
}

// A message's text: a string, or OpenAI's array of parts {"type":"text","text":...}.
static int message_text(const Json *content, Text *out) {
    if (content && content->type == JSON_STRING) { text_append(out, content->string, strlen(content->string)); return 1; }
    if (!content || content->type != JSON_ARRAY) return 0;
    for (int i = 0; i < content->count; i++) {
        const Json *text = json_get(&content->items[i], "text"), *type = json_get(&content->items[i], "type");
        if (!text || text->type != JSON_STRING || !type || type->type != JSON_STRING || strcmp(type->string, "text") != 0)
            return 0;
        text_append(out, text->string, strlen(text->string));
    }
    return 1;
}

// "messages" through the model's chat template, as runq's chat mode feeds a
// conversation: system prompts join the first turn, each user message makes
// a turn, an assistant message its reply and the end-of-turn token; the last
// message must be the user's, whose turn ends on the assistant's header.
static int parse_messages(const Json *body, JobSpec *job, const Server *server, FieldError *e) {
    const Json *messages = field(body, "messages");
    if (!messages || messages->type != JSON_ARRAY || messages->count == 0) {
        snprintf(e->message, sizeof e->message, "'messages' must be a non-empty array");
        return 0;
    }
    Text system = { 0 };
    text_puts(&system, "");
    int ok = 1, turns = 0, last_is_user = 0;
    for (int i = 0; ok && i < messages->count; i++) {
        const Json *role = json_get(&messages->items[i], "role");
        Text content = { 0 };
        text_puts(&content, "");
        ok = role && role->type == JSON_STRING && message_text(json_get(&messages->items[i], "content"), &content);
        if (!ok) {
            snprintf(e->message, sizeof e->message, "messages[%d] needs a string 'role' and a text 'content'", i);
        } else if (strcmp(role->string, "system") == 0 || strcmp(role->string, "developer") == 0) {
            if (system.length > 0) text_puts(&system, "\n");
            text_append(&system, content.data, content.length);
        } else if (strcmp(role->string, "user") == 0) {
            TokenList turn = chat_turn(&server->tokenizer, server->chat_template, turns++ == 0, system.data, content.data, 0);
            for (int k = 0; k < turn.count; k++) push_token(&job->prompt, turn.ids[k]);
            free(turn.ids);
            last_is_user = 1;
        } else if (strcmp(role->string, "assistant") == 0 && turns > 0 && last_is_user) {
            push_encoded(&job->prompt, &server->tokenizer, content.data, 0);
            push_token(&job->prompt, server->end_of_turn);
            last_is_user = 0;
        } else {
            ok = 0;
            snprintf(e->message, sizeof e->message, "messages[%d]: role '%.40s' is not system, user, or an assistant reply to a user",
                     i, role->string);
        }
        text_free(&content);
    }
    if (ok && !last_is_user) {
        ok = 0;
        snprintf(e->message, sizeof e->message, "the last message must be the user's");
    }
    text_free(&system);
    return ok;
}

static void free_job_spec(JobSpec *job) {
    free(job->prompt.ids);
    for (int i = 0; i < job->n_stop; i++) free(job->stop[i]);
    memset(job, 0, sizeof *job);
}

// A request body into a job; 0 and the reason (for a 400) if it is not one.
static int parse_job(const Request *r, int api, const Server *server, JobSpec *job, FieldError *e) {
    memset(job, 0, sizeof *job);
    job->api = api;
    job->temperature = api == API_LLAMA ? 0.8f : 1.0f;
    job->top_p = api == API_LLAMA ? 0.95f : 1.0f;
    job->top_k = api == API_LLAMA ? 40 : 0;
    Json body;
    char syntax[128];
    if (!json_parse_untrusted(r->body, (size_t)r->content_length, &body, syntax, sizeof syntax)) {
        snprintf(e->message, sizeof e->message, "%s", syntax);
        return 0;
    }
    int ok = body.type == JSON_OBJECT;
    if (!ok) snprintf(e->message, sizeof e->message, "the body must be a JSON object");
    ok = ok && parse_sampling(&body, job, server, e)
            && (api == API_CHAT ? parse_messages(&body, job, server, e) : parse_prompt(&body, job, server, e));
    int context = server->transformer.state.cache_len;
    if (ok && job->prompt.count >= context) {
        ok = 0;
        snprintf(e->message, sizeof e->message, "the prompt is %d tokens; the context holds %d (--ctx)", job->prompt.count, context);
    }
    json_free(&body);
    if (!ok) free_job_spec(job);
    return ok;
}

// ----------------------------------------------------------------------------
// Sampling: runq's sampler (temperature, top-p, llama2.c's xorshift), with
// top-k in front of top-p when a request asks for it.

static int sample_top_k(Sampler *s, float *logits, int top_k) {
    int n = s->vocab_size;
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, n);
    for (int i = 0; i < n; i++) s->probindex[i] = (ProbIndex){ logits[i], i };
    qsort(s->probindex, (size_t)n, sizeof(ProbIndex), compare_prob_desc);
    float kept = 0, cumulative = 0;
    for (int i = 0; i < top_k; i++) kept += s->probindex[i].prob;
    int last = top_k - 1;
    for (int i = 0; s->topp > 0 && s->topp < 1 && i < top_k; i++) {
        cumulative += s->probindex[i].prob;
        if (cumulative > s->topp * kept) { last = i; break; }
    }
    float mass = 0, cdf = 0;
    for (int i = 0; i <= last; i++) mass += s->probindex[i].prob;
    float r = random_f32(&s->rng_state) * mass;
    for (int i = 0; i <= last; i++) {
        cdf += s->probindex[i].prob;
        if (r < cdf) return s->probindex[i].index;
    }
    return s->probindex[last].index;
}

static int sample_next(Sampler *s, float *logits, int top_k) {
    if (s->temperature == 0.0f || top_k <= 0 || top_k >= s->vocab_size) return sample(s, logits);
    return sample_top_k(s, logits, top_k);
}

// ----------------------------------------------------------------------------
// The worker: one generation at a time, written straight to the client.

struct Job {
    JobSpec spec;
    int fd;
    int finished;                 // the worker is done with it (or refused it: rejected)
    int rejected;                 // shutting down before its turn: answer 503
    Job *next;
};

typedef struct {
    Text content;                 // the reply so far (a stop word cut off)
    size_t sent;                  // bytes of content streamed
    int n_predicted;
    const char *stop_type;        // llama.cpp's: "eos", "word", "limit"; ours: "abort" (client gone, shutdown)
    const char *stopping_word;
    int client_gone;
    int role_sent;                // chat streams name the role in their first chunk
    double prompt_ms, predicted_ms;
    unsigned long id;
    long created;
} Generation;

static const char *finish_reason(const Generation *g) { return strcmp(g->stop_type, "limit") == 0 ? "length" : "stop"; }

// The first stop word in content, from where it could start given what was
// already checked; sets g->stopping_word and returns its offset, or -1.
static long find_stop_word(Generation *g, const JobSpec *spec) {
    long first = -1;
    for (int i = 0; i < spec->n_stop; i++) {
        const char *hit = strstr(g->content.data, spec->stop[i]);
        if (hit && (first < 0 || hit - g->content.data < first)) {
            first = hit - g->content.data;
            g->stopping_word = spec->stop[i];
        }
    }
    return first;
}

// Bytes at the end of content that must wait for the next token before being
// streamed: the start of a stop word, or of a UTF-8 character.
static size_t held_back(const Generation *g, const JobSpec *spec) {
    const char *text = g->content.data;
    size_t length = g->content.length, hold = 0;
    for (int i = 0; i < spec->n_stop; i++) {
        size_t word = strlen(spec->stop[i]);
        for (size_t k = word - 1; k > hold; k--)
            if (k <= length && memcmp(text + length - k, spec->stop[i], k) == 0) { hold = k; break; }
    }
    for (size_t k = 1; k <= 3 && k <= length; k++)   // a character's start that the next token may finish
        if (utf8_next((const unsigned char *)text + length - k, k) == 0 && k > hold) hold = k;
    return hold;
}

static void timings_json(Text *out, const Generation *g, const JobSpec *spec) {
    text_printf(out, "{\"prompt_n\":%d,\"prompt_ms\":%.3f,\"prompt_per_second\":%.2f,"
                     "\"predicted_n\":%d,\"predicted_ms\":%.3f,\"predicted_per_second\":%.2f}",
                spec->prompt.count, g->prompt_ms, spec->prompt.count / (g->prompt_ms > 0 ? g->prompt_ms : 1e-3) * 1000,
                g->n_predicted, g->predicted_ms, g->n_predicted / (g->predicted_ms > 0 ? g->predicted_ms : 1e-3) * 1000);
}

static void usage_json(Text *out, const Generation *g, const JobSpec *spec) {
    text_printf(out, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
                spec->prompt.count, g->n_predicted, spec->prompt.count + g->n_predicted);
}

// The opening of an OpenAI object: id, object, created, model.
static void openai_head(Text *out, const Server *server, const Generation *g, const JobSpec *spec, int chunk) {
    const char *object = spec->api == API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    text_printf(out, "{\"id\":\"%s-%lu\",\"object\":\"%s\",\"created\":%ld,\"model\":",
                spec->api == API_CHAT ? "chatcmpl" : "cmpl", g->id, object, g->created);
    text_json_cstring(out, server->model_name);
}

// A piece of the reply as one event of the request's API; final: the last
// event, which carries the finish reason (and, for llama.cpp, the whole summary).
static void event_json(Text *out, const Server *server, Generation *g, const JobSpec *spec,
                       const char *piece, size_t length, int final) {
    if (spec->api == API_LLAMA && !final) {
        text_puts(out, "{\"content\":");
        text_json_string(out, piece, length);
        text_printf(out, ",\"stop\":false,\"tokens_predicted\":%d}", g->n_predicted);
        return;
    }
    if (spec->api == API_LLAMA) {   // the final event is the non-streaming answer with empty content
        text_puts(out, "{\"content\":");
        text_json_string(out, piece, length);
        text_puts(out, ",\"model\":");
        text_json_cstring(out, server->model_name);
        text_printf(out, ",\"stop\":true,\"stop_type\":\"%s\",\"stopping_word\":", g->stop_type);
        text_json_cstring(out, g->stopping_word ? g->stopping_word : "");
        text_printf(out, ",\"tokens_predicted\":%d,\"tokens_evaluated\":%d,\"truncated\":false,\"timings\":",
                    g->n_predicted, spec->prompt.count);
        timings_json(out, g, spec);
        text_puts(out, "}");
        return;
    }
    openai_head(out, server, g, spec, 1);
    const char *finish = final ? finish_reason(g) : NULL;
    if (spec->api == API_COMPLETIONS) {
        text_puts(out, ",\"choices\":[{\"index\":0,\"text\":");
        text_json_string(out, piece, length);
        text_puts(out, ",\"logprobs\":null,\"finish_reason\":");
    } else if (final) {
        text_puts(out, ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":");
    } else {
        text_puts(out, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (!g->role_sent) text_puts(out, "\"role\":\"assistant\",");
        g->role_sent = 1;
        text_puts(out, "\"content\":");
        text_json_string(out, piece, length);
        text_puts(out, "},\"finish_reason\":");
    }
    text_printf(out, finish ? "\"%s\"}]" : "null}]", finish);
    if (final) { text_puts(out, ","); usage_json(out, g, spec); }
    text_puts(out, "}");
}

// The whole answer, when not streaming.
static void answer_json(Text *out, const Server *server, Generation *g, const JobSpec *spec) {
    if (spec->api == API_LLAMA) { event_json(out, server, g, spec, g->content.data, g->content.length, 1); return; }
    openai_head(out, server, g, spec, 0);
    if (spec->api == API_COMPLETIONS) {
        text_puts(out, ",\"choices\":[{\"index\":0,\"text\":");
        text_json_string(out, g->content.data, g->content.length);
        text_puts(out, ",\"logprobs\":null");
    } else {
        text_puts(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        text_json_string(out, g->content.data, g->content.length);
        text_puts(out, "}");
    }
    text_printf(out, ",\"finish_reason\":\"%s\"}],", finish_reason(g));
    usage_json(out, g, spec);
    text_puts(out, "}");
}

// Stream what is safe to send (everything, at the end); a failed write means the client left.
static void stream_pending(Job *job, const Server *server, Generation *g, int final) {
    if (!job->spec.stream || g->client_gone) return;
    size_t end = final ? g->content.length : g->content.length - held_back(g, &job->spec);
    Text event = { 0 };
    if (end > g->sent) {
        event_json(&event, server, g, &job->spec, g->content.data + g->sent, end - g->sent, 0);
        g->sent = end;
        if (send_event(job->fd, &event) != 0) g->client_gone = 1;
        text_free(&event);
    }
    if (final && !g->client_gone) {
        event_json(&event, server, g, &job->spec, "", 0, 1);
        if (send_event(job->fd, &event) != 0) g->client_gone = 1;
        if (job->spec.api != API_LLAMA && !g->client_gone && send_all(job->fd, "data: [DONE]\n\n", 14) != 0) g->client_gone = 1;
    }
    text_free(&event);
}

// Has the client closed its end? A waiting client sends nothing, so a
// readable socket with nothing to read is one that hung up: a non-streaming
// request learns it here, not only when its answer fails to go out.
static int client_left(int fd) {
    struct pollfd p = { fd, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0) return 0;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int shutting_down(Server *server) {
    pthread_mutex_lock(&server->lock);
    int stop = server->shutting_down;
    pthread_mutex_unlock(&server->lock);
    return stop;
}

// The prompt through the model, then tokens until EOS, the template's end of
// turn, a stop word, max_tokens, a full context, a client gone, or shutdown.
static void generate_reply(Server *server, Job *job, Generation *g) {
    Transformer *t = &server->transformer;
    const JobSpec *spec = &job->spec;
    Sampler sampler;
    build_sampler(&sampler, t->config.vocab_size, spec->temperature, spec->top_p, spec->seed);
    int room = t->state.cache_len - spec->prompt.count;
    int limit = spec->max_tokens < 0 || spec->max_tokens > room ? room : spec->max_tokens;
    int ends_turn = spec->api == API_CHAT ? server->end_of_turn : -1;

    double start = now_ms();
    float *logits = forward_tokens(t, spec->prompt.ids, spec->prompt.count, 0);
    double decode_start = now_ms();
    g->prompt_ms = decode_start - start;
    int token = spec->prompt.ids[spec->prompt.count - 1], pos = spec->prompt.count;
    g->stop_type = "limit";
    while (g->n_predicted < limit && !g->client_gone && !shutting_down(server)) {
        int next = sample_next(&sampler, logits, spec->top_k);
        if (ends_generation(&server->tokenizer, next) || next == ends_turn) { g->stop_type = "eos"; break; }
        text_puts(&g->content, decode(&server->tokenizer, token, next));
        g->n_predicted++;
        long stop_at = find_stop_word(g, spec);
        if (stop_at >= 0) {
            g->content.length = (size_t)stop_at;
            g->content.data[stop_at] = '\0';
            g->stop_type = "word";
            break;
        }
        stream_pending(job, server, g, 0);
        if (client_left(job->fd)) g->client_gone = 1;
        token = next;
        if (g->n_predicted < limit) logits = forward(t, token, pos++);
        if (server->settings.token_delay_ms > 0) usleep((useconds_t)server->settings.token_delay_ms * 1000);
    }
    // cut short by a client gone or a shutdown: neither the model's end nor the length asked for
    if (strcmp(g->stop_type, "limit") == 0 && g->n_predicted < limit) g->stop_type = "abort";
    g->predicted_ms = now_ms() - decode_start;
    free_sampler(&sampler);
}

static void run_job(Server *server, Job *job) {
    Generation g = { .stop_type = "none", .created = (long)time(NULL) };
    text_puts(&g.content, "");
    pthread_mutex_lock(&server->lock);
    g.id = ++server->next_id;
    pthread_mutex_unlock(&server->lock);

    if (job->spec.stream && send_head(job->fd, 200, "text/event-stream", -1, NULL) != 0) g.client_gone = 1;
    if (!g.client_gone) generate_reply(server, job, &g);
    if (job->spec.stream) {
        stream_pending(job, server, &g, 1);
    } else if (!g.client_gone) {
        Text answer = { 0 };
        answer_json(&answer, server, &g, &job->spec);
        if (send_json(job->fd, 200, &answer) != 0) g.client_gone = 1;
        text_free(&answer);
    }
    fprintf(stderr, "server: job %lu: prompt %d tokens, %d predicted, stop %s, %.1f tok/s%s\n", g.id,
            job->spec.prompt.count, g.n_predicted, g.stop_type,
            g.n_predicted / (g.predicted_ms > 0 ? g.predicted_ms : 1e-3) * 1000,
            g.client_gone ? " (client gone: generation stopped)" : "");
    text_free(&g.content);
}

static void *worker_loop(void *raw) {
    Server *server = raw;
    pthread_mutex_lock(&server->lock);
    for (;;) {
        while (!server->queue_head && !server->shutting_down) pthread_cond_wait(&server->changed, &server->lock);
        Job *job = server->queue_head;
        if (!job) break;   // shutting down, nothing left
        server->queue_head = job->next;
        if (!server->queue_head) server->queue_tail = NULL;
        server->queued--;
        if (server->shutting_down) {
            job->rejected = 1;
        } else {
            pthread_mutex_unlock(&server->lock);
            run_job(server, job);
            pthread_mutex_lock(&server->lock);
        }
        job->finished = 1;
        pthread_cond_broadcast(&server->changed);
    }
    pthread_mutex_unlock(&server->lock);
    return NULL;
}

// Queue a job and wait for the worker to finish it: 0, or 503 when the queue is full or the server stopping.
static int submit_and_wait(Server *server, Job *job) {
    pthread_mutex_lock(&server->lock);
    if (server->shutting_down || server->queued >= server->settings.queue_capacity) {
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
// The chat page at /: plain HTML and JavaScript, no build step. It streams
// /v1/chat/completions and shows each token as it arrives.

static const char chat_page[] =
"<!doctype html>\n"
"<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Edge LLM</title>\n"
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
"<style>\n"
"body{font-family:system-ui,sans-serif;max-width:46rem;margin:1rem auto;padding:0 1rem;color:#222}\n"
"#log{border:1px solid #ccc;border-radius:6px;padding:.5rem;min-height:12rem;white-space:pre-wrap}\n"
".user{color:#05a;margin:.4rem 0}.assistant{margin:.4rem 0 1rem}.error{color:#b00}\n"
"form{display:flex;gap:.5rem;margin-top:.5rem}#prompt{flex:1;padding:.4rem}\n"
"</style></head><body>\n"
"<h1>Edge LLM</h1>\n"
"<div id=\"log\"></div>\n"
"<form id=\"form\"><input id=\"prompt\" autocomplete=\"off\" placeholder=\"Say something\" autofocus>"
"<button id=\"send\">Send</button></form>\n"
"<p><label>max tokens <input id=\"max\" type=\"number\" value=\"200\" min=\"1\" style=\"width:5rem\"></label>\n"
"<label>temperature <input id=\"temp\" type=\"number\" value=\"0.8\" step=\"0.1\" min=\"0\" style=\"width:4rem\"></label>\n"
"<label>API key <input id=\"key\" type=\"password\" style=\"width:8rem\"></label></p>\n"
"<script>\n"
"const messages = [];\n"
"const log = document.getElementById('log'), form = document.getElementById('form'), prompt = document.getElementById('prompt');\n"
"const key = document.getElementById('key');\n"
"key.value = localStorage.getItem('edge-llm-key') || '';\n"
"function line(cls, text) { const d = document.createElement('div'); d.className = cls; d.textContent = text; log.appendChild(d); return d; }\n"
"form.addEventListener('submit', async (event) => {\n"
"  event.preventDefault();\n"
"  const text = prompt.value.trim(); if (!text) return;\n"
"  prompt.value = ''; localStorage.setItem('edge-llm-key', key.value);\n"
"  messages.push({role: 'user', content: text}); line('user', 'You: ' + text);\n"
"  const reply = line('assistant', ''); let answer = '';\n"
"  const headers = {'Content-Type': 'application/json'}; if (key.value) headers.Authorization = 'Bearer ' + key.value;\n"
"  try {\n"
"    const response = await fetch('/v1/chat/completions', {method: 'POST', headers, body: JSON.stringify({messages, stream: true,\n"
"      max_tokens: Number(document.getElementById('max').value), temperature: Number(document.getElementById('temp').value)})});\n"
"    if (!response.ok) throw new Error((await response.json()).error.message);\n"
"    const reader = response.body.getReader(), decoder = new TextDecoder(); let buffer = '';\n"
"    for (;;) {\n"
"      const {done, value} = await reader.read(); if (done) break;\n"
"      buffer += decoder.decode(value, {stream: true});\n"
"      let cut; while ((cut = buffer.indexOf('\\n\\n')) >= 0) {\n"
"        const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);\n"
"        if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;\n"
"        const delta = JSON.parse(event.slice(6)).choices[0].delta;\n"
"        if (delta.content) { answer += delta.content; reply.textContent = answer; }\n"
"      }\n"
"    }\n"
"    messages.push({role: 'assistant', content: answer}); reply.dataset.done = '1';\n"
"  } catch (error) { reply.className = 'error'; reply.textContent = 'Error: ' + error.message; reply.dataset.done = '1'; }\n"
"});\n"
"</script></body></html>\n";

// ----------------------------------------------------------------------------
// Routes

static void handle_health(Server *server, int fd) {
    pthread_mutex_lock(&server->lock);
    int queued = server->queued;
    pthread_mutex_unlock(&server->lock);
    Text body = { 0 };
    text_printf(&body, "{\"status\":\"ok\",\"queued\":%d}", queued);
    send_json(fd, 200, &body);
    text_free(&body);
}

static void handle_models(Server *server, int fd) {
    Text body = { 0 };
    text_puts(&body, "{\"object\":\"list\",\"data\":[{\"id\":");
    text_json_cstring(&body, server->model_name);
    const Config *c = &server->transformer.config;
    text_printf(&body, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"edge-llm\","
                       "\"meta\":{\"n_vocab\":%d,\"n_ctx_train\":%d,\"n_ctx\":%d,\"n_embd\":%d,\"n_layer\":%d}}]}",
                server->started, c->vocab_size, c->seq_len, server->transformer.state.cache_len, c->dim, c->n_layers);
    send_json(fd, 200, &body);
    text_free(&body);
}

// The body as a JSON object, or a 400 already sent (*body untouched then).
static int parse_object_body(const Request *r, int fd, Json *body) {
    char syntax[128];
    if (!json_parse_untrusted(r->body, (size_t)r->content_length, body, syntax, sizeof syntax)) {
        send_error(fd, 400, syntax, NULL);
        return 0;
    }
    if (body->type == JSON_OBJECT) return 1;
    json_free(body);
    send_error(fd, 400, "the body must be a JSON object", NULL);
    return 0;
}

// {"content": "text", "add_special": false} -> {"tokens": [ids]}
static void handle_tokenize(Server *server, const Request *r, int fd) {
    Json body;
    if (!parse_object_body(r, fd, &body)) return;
    const Json *content = json_get(&body, "content");
    int add_special = 0;
    FieldError e;
    if (!content || content->type != JSON_STRING || strlen(content->string) != content->length) {
        send_error(fd, 400, "'content' must be a string (without NUL characters)", NULL);
    } else if (!field_bool(&body, "add_special", &add_special, &e)) {
        send_error(fd, 400, e.message, NULL);
    } else {
        TokenList tokens = { 0 };
        push_encoded(&tokens, &server->tokenizer, content->string, add_special);
        Text out = { 0 };
        text_puts(&out, "{\"tokens\":[");
        for (int i = 0; i < tokens.count; i++) text_printf(&out, "%s%d", i ? "," : "", tokens.ids[i]);
        text_puts(&out, "]}");
        send_json(fd, 200, &out);
        text_free(&out);
        free(tokens.ids);
    }
    json_free(&body);
}

// {"tokens": [ids]} -> {"content": "text"}
static void handle_detokenize(Server *server, const Request *r, int fd) {
    Json body;
    if (!parse_object_body(r, fd, &body)) return;
    const Json *tokens = json_get(&body, "tokens");
    int vocab_size = server->transformer.config.vocab_size, ok = tokens && tokens->type == JSON_ARRAY;
    for (int i = 0; ok && i < tokens->count; i++) {
        double id = tokens->items[i].number;
        ok = tokens->items[i].type == JSON_NUMBER && id == floor(id) && id >= 0 && id < vocab_size;
    }
    if (!ok) {
        char message[128];
        snprintf(message, sizeof message, "'tokens' must be an array of token ids in [0, %d)", vocab_size);
        send_error(fd, 400, message, NULL);
    } else {
        Text text = { 0 }, out = { 0 };
        text_puts(&text, "");
        for (int i = 0; i < tokens->count; i++) {
            // BOS and EOS mark the text's ends, with no text of their own; the first
            // piece decodes as after BOS, so /tokenize's text comes back unchanged
            int id = (int)tokens->items[i].number;
            if (id != server->tokenizer.bos_id && id != server->tokenizer.eos_id)
                text_puts(&text, decode(&server->tokenizer, i ? (int)tokens->items[i - 1].number : server->tokenizer.bos_id, id));
        }
        text_puts(&out, "{\"content\":");
        text_json_string(&out, text.data, text.length);
        text_puts(&out, "}");
        send_json(fd, 200, &out);
        text_free(&text);
        text_free(&out);
    }
    json_free(&body);
}

static void handle_generation(Server *server, const Request *r, int fd, int api) {
    Job job = { .fd = fd };
    FieldError e;
    if (!parse_job(r, api, server, &job.spec, &e)) { send_error(fd, 400, e.message, NULL); return; }
    if (submit_and_wait(server, &job) == 503)
        send_error(fd, 503, "the server is busy: the queue is full (or the server is stopping)", "Retry-After: 1\r\n");
    free_job_spec(&job.spec);
}

typedef struct {
    const char *method, *path;
    int needs_key;                // with --api-key
    int api;                      // generation routes: Api; -1 otherwise
} Route;

static const Route routes[] = {
    { "GET", "/", 0, -1 },
    { "GET", "/health", 0, -1 },
    { "GET", "/v1/models", 1, -1 },
    { "GET", "/models", 1, -1 },
    { "POST", "/tokenize", 1, -1 },
    { "POST", "/detokenize", 1, -1 },
    { "POST", "/completion", 1, API_LLAMA },
    { "POST", "/completions", 1, API_LLAMA },
    { "POST", "/v1/completions", 1, API_COMPLETIONS },
    { "POST", "/v1/chat/completions", 1, API_CHAT },
    { "POST", "/chat/completions", 1, API_CHAT },
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

static void dispatch(Server *server, const Request *r, int fd) {
    const Route *route = NULL;
    int path_known = 0;
    for (int i = 0; i < N_ROUTES; i++) {
        if (strcmp(routes[i].path, r->path) != 0) continue;
        path_known = 1;
        if (strcmp(routes[i].method, r->method) == 0) route = &routes[i];
    }
    if (!route && path_known) {
        char allow[64];
        for (int i = 0; i < N_ROUTES; i++) if (strcmp(routes[i].path, r->path) == 0)
            snprintf(allow, sizeof allow, "Allow: %s\r\n", routes[i].method);
        send_error(fd, 405, "method not allowed on this path", allow);
        return;
    }
    if (!route) { send_error(fd, 404, "no such route", NULL); return; }
    if (route->needs_key && !authorized(server, r)) {
        send_error(fd, 401, "missing or wrong API key: send Authorization: Bearer KEY", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (route->api >= 0) handle_generation(server, r, fd, route->api);
    else if (strcmp(r->path, "/") == 0) send_response(fd, 200, "text/html; charset=utf-8", chat_page, strlen(chat_page), NULL);
    else if (strcmp(r->path, "/health") == 0) handle_health(server, fd);
    else if (strcmp(r->path, "/tokenize") == 0) handle_tokenize(server, r, fd);
    else if (strcmp(r->path, "/detokenize") == 0) handle_detokenize(server, r, fd);
    else handle_models(server, fd);
}

// ----------------------------------------------------------------------------
// Connections: a thread each, at most MAX_CONNECTIONS

typedef struct {
    Server *server;
    int fd;
} Connection;

static void connection_ended(Server *server) {
    pthread_mutex_lock(&server->lock);
    server->connections--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
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
    RequestSource source = { .fd = fd, .deadline_ms = now_ms() + server->settings.timeout_ms };
    HttpError e = read_request(&source, request);
    if (e.status == NO_REQUEST) {
        request->body_unread = 0;
    } else if (e.status) {
        send_error(fd, e.status, e.message, NULL);
        fprintf(stderr, "server: %d %s\n", e.status, e.message);
    } else {
        dispatch(server, request, fd);
    }
    close_gracefully(fd, request->body_unread);
    free(request->body);
    free(request);
    connection_ended(server);
    return NULL;
}

static void start_connection(Server *server, int fd) {
    pthread_mutex_lock(&server->lock);
    int room = server->connections < MAX_CONNECTIONS;
    if (room) server->connections++;
    pthread_mutex_unlock(&server->lock);
    if (!room) {
        send_error(fd, 503, "too many connections", "Retry-After: 1\r\n");
        close(fd);
        return;
    }
    Connection *connection = xcalloc(1, sizeof *connection, "connection");
    *connection = (Connection){ server, fd };
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 256 * 1024);
    if (pthread_create(&thread, &attributes, serve_connection, connection) != 0) {
        free(connection);
        send_error(fd, 503, "cannot start a thread", "Retry-After: 1\r\n");
        close(fd);
        connection_ended(server);
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
    if (listen(fd, 128) != 0) die("cannot listen on %s:%d: %s", host, port, strerror(errno));
    return fd;
}

static void accept_until_stopped(Server *server, int listen_fd) {
    while (!stop_requested) {
        struct pollfd p = { listen_fd, POLLIN, 0 };
        if (poll(&p, 1, 200) <= 0) continue;   // a timeout or a signal: look at the flag again
        int fd = accept(listen_fd, NULL, NULL);
        if (fd >= 0) start_connection(server, fd);
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
        "  -T <int>          threads for the model, default: online cores\n"
        "  -k <f16|q8>       KV cache type, default f16 (q8: int8, half the memory)\n"
        "  -z <path>         tokenizer.bin overriding the checkpoint's\n"
        "  --ctx <int>       positions per request, prompt and reply, default: the model's context, at most 4096\n"
        "  --queue <int>     requests waiting behind the running one before 503, default 16\n"
        "  --timeout <ms>    to read a request and for each write, default 10000\n"
        "  --token-delay <ms> pause after each token (tests: a slow board), default 0\n");
    exit(EXIT_FAILURE);
}

static Settings parse_settings(int argc, char **argv) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    Settings s = { .host = "127.0.0.1", .port = 8080, .n_threads = online > 0 ? (int)online : 1,
                   .queue_capacity = 16, .timeout_ms = 10000 };
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
        else if (strcmp(flag, "-k") == 0) s.kv_type = parse_kv_type(value);
        else if (strcmp(flag, "--ctx") == 0) s.context = (int)parse_long(flag, value, 2, INT_MAX);
        else if (strcmp(flag, "--queue") == 0) s.queue_capacity = (int)parse_long(flag, value, 0, 4096);
        else if (strcmp(flag, "--timeout") == 0) s.timeout_ms = (int)parse_long(flag, value, 100, 3600000);
        else if (strcmp(flag, "--token-delay") == 0) s.token_delay_ms = (int)parse_long(flag, value, 0, 10000);
        else die("unknown flag '%s' (run server alone for its usage)", flag);
    }
    if (s.api_key && !s.api_key[0]) die("--api-key must not be empty");
    return s;
}

static void load_model(Server *server) {
    const Settings *s = &server->settings;
    open_checkpoint(&server->transformer, s->model_path);
    int seq_len = server->transformer.config.seq_len;
    if (s->context > seq_len) die("--ctx %d is beyond the model's context of %d positions", s->context, seq_len);
    server->transformer.kv_type = s->kv_type;
    prepare_run(&server->transformer, s->context ? s->context : seq_len < 4096 ? seq_len : 4096, s->n_threads);
    print_memory_plan(&server->transformer);
    build_tokenizer(&server->tokenizer, &server->transformer, s->tokenizer_path);
    server->chat_template = choose_chat_template(&server->tokenizer, NULL, server->transformer.config.chat_template, s->model_path);
    server->end_of_turn = chat_end_of_turn(&server->tokenizer, server->chat_template);
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
    load_model(&server);
    server.started = (long)time(NULL);
    pthread_mutex_init(&server.lock, NULL);
    pthread_cond_init(&server.changed, NULL);
    install_signal_handlers();

    int listen_fd = listen_on(server.settings.host, server.settings.port);
    struct sockaddr_in bound;
    socklen_t bound_length = sizeof bound;
    getsockname(listen_fd, (struct sockaddr *)&bound, &bound_length);
    fprintf(stderr, "server: %s (%s chat template, %d positions per request) on http://%s:%d/\n", server.model_name,
            server.chat_template->name, server.transformer.state.cache_len, server.settings.host, ntohs(bound.sin_port));

    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_loop, &server) != 0) die("cannot start the worker thread");
    accept_until_stopped(&server, listen_fd);
    fprintf(stderr, "server: stopping\n");
    if (shut_down(&server, listen_fd, worker) == 0) {   // a connection thread still running may use the model
        free_tokenizer(&server.tokenizer);
        free_transformer(&server.transformer);
    }
    fprintf(stderr, "server: stopped\n");
    return 0;
}
#endif

// fuzz_http — the server's side of a connection on arbitrary bytes: the
// request line, the headers, Content-Length and the body read as server.c
// reads them from a socket (its RequestSource, here over memory), then the
// request dispatched as the server would: the routes, the API key, the JSON
// bodies of /completion, /v1/completions, /v1/chat/completions (messages
// through each chat template of runq.c, with tools, grammars and JSON
// schemas compiled), /tokenize, /detokenize and /apply-template. The
// responses go to fd -1 (nowhere); generation requests end at the queue,
// which answers 503 (the server is "stopping": there is no model to run).
//
// The input's first byte is how the client sends: 0 all at once, else that
// many bytes per receive. Its second picks the model: bits 0-1 and 3 the chat
// template (Llama 2 and Zephyr with the SentencePiece tokenizer.bin; Llama 3,
// ChatML, and with bit 3 Qwen3, SmolLM3, Phi-3.5 and Phi-4-mini with a
// byte-level one that has their special tokens), bit 2 an API key ("secret").
// The rest is what the client sends.
//
// Unlike the file parsers, the server must never die(): an exit here is a
// finding (libFuzzer reports it), so this target has no FUZZ_BEGIN.
#include "fuzz.h"
#include "tokenizers.h"
#include "../../server.c"

#define CONTEXT 128   // KV cache positions: a longer prompt is refused, as with --ctx 128

static Server servers[8];   // one per chat template

static const char *const merges[] = { "he", " t", "th", "in", "er", " the", "\xC3\xA9", "\n\n" };
static const char *const specials[] = {
    "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|im_start|>", "<|im_end|>",
    "<think>", "</think>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
};

static void build_server(Server *server, const Tokenizer *tok, const char *template_name) {
    server->tokenizer = *tok;   // shared, read-only
    server->transformer.config.vocab_size = tok->vocab_size;
    server->transformer.state.cache_len = CONTEXT;
    server->chat_template = choose_chat_template(tok, template_name, 0, "fuzz");
    prepare_chat(server, 1);
    server->shutting_down = 1;
    snprintf(server->model_name, sizeof server->model_name, "fuzz-%s", template_name);
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->changed, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    static Tokenizer sentencepiece, byte_level;
    fuzz_sentencepiece(&sentencepiece);
    fuzz_byte_level(&byte_level, merges, (int)(sizeof merges / sizeof merges[0]), specials,
                    (int)(sizeof specials / sizeof specials[0]));
    build_server(&servers[0], &sentencepiece, "llama2");
    build_server(&servers[1], &byte_level, "llama3");
    build_server(&servers[2], &byte_level, "chatml");
    build_server(&servers[3], &sentencepiece, "zephyr");
    build_server(&servers[4], &byte_level, "qwen3");
    build_server(&servers[5], &byte_level, "smollm3");
    build_server(&servers[6], &byte_level, "phi3");
    build_server(&servers[7], &byte_level, "phi4");
    fuzz_forget_tracked();   // the tokenizers live as long as the process
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    uint8_t *bytes = fuzz_copy_input(data + 2, size - 2, 0);
    Server *server = &servers[(data[1] & 3) | (data[1] >> 1 & 4)];
    server->settings.api_key = data[1] & 4 ? "secret" : NULL;
    RequestSource client = { .fd = -1, .bytes = (const char *)bytes, .left = size - 2, .chunk = data[0] ? data[0] : SIZE_MAX };

    Request *request = calloc(1, sizeof *request);   // as serve_connection does, without the socket
    HttpError e = read_request(&client, request);
    if (e.status == 0) dispatch(server, request, -1);
    else if (e.status != NO_REQUEST) { const Reply nowhere = { -1, NULL, 0 }; send_error(&nowhere, e.status, e.message, NULL); }
    free(request->body);
    free(request);
    fuzz_check_released();
    fuzz_free_input(bytes);
    return 0;
}

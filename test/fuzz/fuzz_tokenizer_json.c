// fuzz_tokenizer_json — export's tokenizer.json import (tokenizer_from_json):
// SentencePiece-style BPE (Llama 2, Mistral, Gemma 3) and byte-level BPE
// (Llama 3, Qwen3 with NFC, GPT-4o: the seeds are their real files cut down),
// checked and turned into a tokenizer blob. The input's first two bytes are
// the model's vocabulary size (little-endian, 0 read as 1), the rest the
// file. A blob it writes must then parse and encode.
#include "fuzz.h"

static void use_blob(const uint8_t *blob, size_t size, int vocab_size) {
    Tokenizer tok;
    const char *error = build_tokenizer_from_memory(&tok, blob, size, vocab_size);
    if (error) { fprintf(stderr, "fuzz_tokenizer_json: the import wrote a blob that does not parse: %s\n", error); abort(); }
    tok.bos_id = 0;
    tok.eos_id = vocab_size - 1;
    static const char text[] = "Hello, the world \xC3\xA9t\xC3\xA9 12345 \xFF end";
    int tokens[sizeof text + 3];
    (void)encode(&tok, text, 1, 1, tokens);
    free_tokenizer(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int vocab_size = data[0] | data[1] << 8;
    if (vocab_size == 0) vocab_size = 1;
    const char *path = fuzz_write_file("tokenizer.json", data + 2, size - 2);
    FUZZ_BEGIN;
    uint8_t *blob = NULL;
    size_t blob_size = 0;
    const char *refusal = tokenizer_from_json(path, vocab_size, &blob, &blob_size);
    if (!refusal) use_blob(blob, blob_size, vocab_size);
    free(blob);
    FUZZ_END;
    return 0;
}

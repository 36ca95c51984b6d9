// fuzz_tokenizer_blob — the tokenizer reader (build_tokenizer_from_memory) on
// arbitrary bytes, both kinds: SentencePiece (llama2.c's tokenizer.bin layout)
// and byte-level ("BBPE" first). The input's first two bytes are the
// vocabulary size the model would ask for (little-endian, 0 read as 1), the
// rest the blob. An accepted tokenizer then encodes and decodes a text that
// mixes ASCII, UTF-8 and invalid bytes, so its lookup index is exercised too.
// Not a check of the ids (test_tokenizer.c is).
#include "fuzz.h"

static const char sample_text[] = "Once upon a time, \xC3\xA9t\xC3\xA9 \xE2\x96\x81 <s> 123 \xF0\x9F\x98\x80 \xFF\xC0\x80 end\n\n";

static void encode_and_decode(const Tokenizer *tok) {
    int tokens[sizeof sample_text + 3];
    int n = encode(tok, sample_text, 1, 1, tokens);
    for (int i = 1; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= tok->vocab_size) abort();   // encode must give ids of the vocabulary
        (void)decode(tok, tokens[i - 1], tokens[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int vocab_size = data[0] | data[1] << 8;
    if (vocab_size == 0) vocab_size = 1;
    FUZZ_BEGIN;
    Tokenizer tok;
    const char *error = build_tokenizer_from_memory(&tok, data + 2, size - 2, vocab_size);
    if (!error) {
        tok.bos_id = 1 % vocab_size;
        tok.eos_id = 2 % vocab_size;
        encode_and_decode(&tok);
    }
    free_tokenizer(&tok);   // also after an error: what was allocated so far
    FUZZ_END;
    return 0;
}

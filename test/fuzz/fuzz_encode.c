// fuzz_encode — the encoder on arbitrary bytes (invalid UTF-8 included), as a
// prompt is: with Llama 2's SentencePiece tokenizer.bin (the repository's,
// or $FUZZ_TOKENIZER) and with a small byte-level tokenizer built here
// (Llama 3's kind, then GPT-2's and SmolLM2's split rules: the chunking, then
// merges). Every id must be in the vocabulary and, byte-level, the decoded
// pieces must spell the text.
// Not a check of the ids against reference tokenizers (test_tokenizer.c is).
#include "fuzz.h"
#include "tokenizers.h"

static Tokenizer sentencepiece, byte_level;

// The byte-level tokenizer's merges and special tokens (tokenizers.h builds it)
static const char *const merges[] = {
    "he", " t", "th", "in", "er", " a", "the", " the", "on", "an", "\xC3\xA9", "  ", "\n\n", "12", "123", "'s", "\xE2\x96",
};
static const char *const specials[] = { "<|begin_of_text|>", "<|eot_id|>" };

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_sentencepiece(&sentencepiece);
    fuzz_byte_level(&byte_level, merges, (int)(sizeof merges / sizeof merges[0]), specials,
                    (int)(sizeof specials / sizeof specials[0]));
    fuzz_forget_tracked();   // the two tokenizers live as long as the process
    return 0;
}

// Encodes text; every id must be a piece, and byte-level pieces spell the text back.
static void check_encode(const Tokenizer *tok, const char *text, size_t length) {
    int *tokens = malloc((length + 3) * sizeof(int));
    int n = encode(tok, text, 1, 1, tokens);
    if (n < 2 || n > (int)length + 3 || tokens[0] != tok->bos_id || tokens[n - 1] != tok->eos_id) abort();
    size_t spelled = 0;
    for (int i = 1; i < n - 1; i++) {
        if (tokens[i] < 0 || tokens[i] >= tok->vocab_size) abort();
        const char *piece = decode(tok, tokens[i - 1], tokens[i]);
        if (tok->kind == TOKENIZER_BYTE_LEVEL) {
            size_t piece_length = (size_t)tok->lengths[tokens[i]];
            if (spelled + piece_length > length || memcmp(text + spelled, piece, piece_length) != 0) abort();
            spelled += piece_length;
        }
    }
    if (tok->kind == TOKENIZER_BYTE_LEVEL && spelled != length) abort();
    free(tokens);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = (char *)fuzz_copy_input(data, size, 1);   // a prompt is a C string: it ends at its first NUL
    size_t length = strlen(text);
    FUZZ_BEGIN;
    check_encode(&sentencepiece, text, length);
    for (int rule = SPLIT_LLAMA3; rule < N_SPLIT_RULES; rule++) {   // the same pieces under each split rule
        Tokenizer split = byte_level;
        split.split_rule = rule;
        check_encode(&split, text, length);
    }
    FUZZ_END;
    fuzz_free_input((uint8_t *)text);
    return 0;
}

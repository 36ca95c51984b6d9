// tokenizers.h — the tokenizers the prompt-side fuzz targets (fuzz_encode,
// fuzz_http) encode with, built once in LLVMFuzzerInitialize. Include after fuzz.h.

// Llama 2's SentencePiece tokenizer.bin: the repository's, or $FUZZ_TOKENIZER.
static void fuzz_sentencepiece(Tokenizer *tok) {
    const char *path = getenv("FUZZ_TOKENIZER") ? getenv("FUZZ_TOKENIZER") : "tokenizer.bin";
    size_t size;
    uint8_t *data = read_whole_file(path, &size);
    const char *error = build_tokenizer_from_memory(tok, data, size, 32000);
    if (error) { fprintf(stderr, "fuzz: %s: %s\n", path, error); abort(); }
    tok->bos_id = 1;
    tok->eos_id = 2;
    free(data);
}

// A small byte-level tokenizer (Llama 3's kind): the 256 bytes, then the
// merges (rank order), then the special tokens (-inf: never matched from
// text), of which the first is BOS and the second EOS.
static void fuzz_byte_level(Tokenizer *tok, const char *const *merges, int n_merges, const char *const *specials,
                            int n_specials) {
    Buffer b = { 0 };
    tokenizer_start(&b, TOKENIZER_BYTE_LEVEL, SPLIT_LLAMA3);
    for (int byte = 0; byte < 256; byte++) {
        char piece = (char)byte;
        tokenizer_put_piece(&b, (float)-byte, &piece, 1);
    }
    for (int i = 0; i < n_merges; i++) tokenizer_put_piece(&b, (float)-(256 + i), merges[i], strlen(merges[i]));
    for (int i = 0; i < n_specials; i++) tokenizer_put_piece(&b, -INFINITY, specials[i], strlen(specials[i]));
    tokenizer_finish(&b, 32);
    const char *error = build_tokenizer_from_memory(tok, b.data, b.size, 256 + n_merges + n_specials);
    if (error) { fprintf(stderr, "fuzz: the byte-level tokenizer: %s\n", error); abort(); }
    tok->bos_id = 256 + n_merges;
    tok->eos_id = tok->bos_id + 1;
    free(b.data);
}

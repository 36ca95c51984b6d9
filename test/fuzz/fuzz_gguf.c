// fuzz_gguf — a GGUF file through open_gguf (header, metadata, tokenizer
// arrays, tensor infos, all behind the bounds-checked cursor). An accepted
// file is then planned as an int4 export would plan it, every planned tensor
// checked against the file, its first and last rows read (as floats, and as
// Q4_0 blocks when it holds them), and its tokenizer parsed.
// Not a check of the values read (test_gguf.c and test_kquant.sh are).
#include "fuzz.h"

static void read_tensor_ends(Source *src, const PlannedTensor *t) {
    int cols = (int)t->entry.cols, rows = (int)t->entry.rows, padded = (int)round_up((size_t)cols, Q_BLOCK);
    float *row = xcalloc((size_t)cols, sizeof(float), "row");
    uint8_t *nibbles = xcalloc((size_t)padded / 2, 1, "row");
    uint16_t *scales = xcalloc((size_t)padded / Q_BLOCK, sizeof(uint16_t), "row");
    int ends[2] = { 0, rows - 1 };
    for (int i = 0; i < 2; i++) {
        src->read_rows(src, t, ends[i], ends[i] + 1, row);
        src->read_codes(src, t, TYPE_Q4, Q_BLOCK, ends[i], ends[i] + 1, nibbles, scales);
    }
    free(row);
    free(nibbles);
    free(scales);
}

static void use_source(Source *src) {
    Plan plan = make_plan(src, TYPE_Q4, Q_BLOCK);
    check_source_tensors(src, &plan);
    for (int i = 0; i < plan.count; i++)
        if (plan.tensors[i].kind != K_TOKENIZER) read_tensor_ends(src, &plan.tensors[i]);
    free(plan.tensors);
    if (src->tokenizer) {
        Tokenizer tok;
        (void)build_tokenizer_from_memory(&tok, src->tokenizer, src->tokenizer_size, src->header.vocab_size);
        free_tokenizer(&tok);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.gguf", data, size);
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_gguf(&src, path);
    use_source(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}

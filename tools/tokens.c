/*
tokens.c — the token ids runq feeds its model for a prompt (BOS first), on one
line: tools/bench-vs-llamacpp hands llama.cpp exactly these ids, so both sides
evaluate the same tokens.

    cc -O2 -o build/tokens tools/tokens.c -lm -lpthread
    build/tokens model.q4.bin "Once upon a time"       ->  1 9038 2501 263 931
It is not a tokenizer of its own: runq.c's encoder, printed.
*/
#define TESTING          // runq.c without its main
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../runq.c"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "Usage: tokens CHECKPOINT PROMPT   (uses the checkpoint's embedded tokenizer)\n");
        return EXIT_FAILURE;
    }
    Transformer transformer;
    open_checkpoint(&transformer, argv[1]);
    Tokenizer tokenizer;
    build_tokenizer(&tokenizer, &transformer, NULL);
    int *ids = xcalloc(encode_capacity(&tokenizer, argv[2]), sizeof(int), "token ids");
    int n = encode(&tokenizer, argv[2], 1, 0, ids);   // as generate() does: BOS, no EOS
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    free_tokenizer(&tokenizer);
    free_transformer(&transformer);   // no run state or threads were made: frees the mapping
    return 0;
}

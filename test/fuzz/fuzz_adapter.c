// fuzz_adapter — runq's reader of LoRA adapter files (runq --lora FILE):
// the input is an adapter for a fixed tiny base model (made once, at start:
// export's random model of BASE_SHAPE, written as int4 and opened as runq
// opens it). The header is checked against the base's, every lora_a/lora_b
// pair against the projection it adapts; an accepted adapter runs a short
// prompt, which reads every value it holds.
// Not a check of the adapter's arithmetic (test_train.sh holds runq --lora to
// run.c).
#include "fuzz.h"

#define BASE_SHAPE "dim=32,ffn=48,layers=2,heads=4,kv_heads=2,vocab=64,seq_len=16"

static Transformer base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    Source src = { 0 };
    open_random(&src, BASE_SHAPE, 42);
    synthetic_tokenizer(&src);
    char path[160];
    snprintf(path, sizeof path, "%s/base.q4.bin", fuzz_dir());
    write_checkpoint(&src, path, TYPE_Q4, 32, 1);
    free_source(&src);
    open_checkpoint(&base, strdup(path));
    prepare_run(&base, 8, 1);
    fuzz_forget_tracked();   // the base lives as long as the process
    return 0;
}

// What a rejected or finished adapter left on the base's projections.
static void detach_adapter(void) {
    for (int l = 0; l < base.config.n_layers; l++) {
        Tensor *projections[N_PROJECTIONS];
        layer_projections(&base.weights.layers[l], projections);
        for (int i = 0; i < N_PROJECTIONS; i++) {
            projections[i]->lora_rank = 0;
            projections[i]->lora_a = projections[i]->lora_b = NULL;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("adapter.bin", data, size);
    FUZZ_BEGIN;
    load_adapter(&base, path);
    int tokens[3] = { base.config.bos_id, 5, 9 };
    float *logits = forward_tokens(&base, tokens, 3, 0);
    (void)argmax(logits, base.config.vocab_size);
    munmap((void *)base.adapter_data, base.adapter_size);
    base.adapter_data = NULL;
    FUZZ_END;
    detach_adapter();
    return 0;
}

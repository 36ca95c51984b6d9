// fuzz_peft — a PEFT LoRA adapter merged into a tiny random model (open_lora):
// adapter_config.json and adapter_model.safetensors both come from the input,
// split by its first two bytes (the config's length, little-endian). An
// accepted adapter is then merged: every tensor of the model planned,
// checked, and read whole (the model is tiny).
// Not a check of the merged values (test_lora.c is).
#include "fuzz.h"

// The model the adapters are for (the seed corpus's adapters fit it)
#define TINY_MODEL "dim=32,ffn=48,layers=2,heads=4,kv_heads=2,vocab=64,seq_len=16"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const files[] = { "adapter_config.json", "adapter_model.safetensors" };
    if (!fuzz_write_files(data, size, files, 2)) return 0;
    FUZZ_BEGIN;
    Source src;
    memset(&src, 0, sizeof src);
    open_random(&src, TINY_MODEL, 1);
    open_lora(&src, fuzz_dir());
    fuzz_read_all_tensors(&src);
    free_source(&src);
    FUZZ_END;
    return 0;
}

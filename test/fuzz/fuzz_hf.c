// fuzz_hf — a Hugging Face model directory through export's open_hf:
// config.json (model_type, the dimensions, rope_scaling, tied embeddings),
// model.safetensors, and when the input holds them tokenizer.json (imported
// for the config's vocabulary) and tokenizer_config.json (chat template,
// BOS and EOS by name). The input is the lengths of the first three files
// (2 bytes each, little-endian), then the four files. An accepted model is
// planned, every tensor checked against the file and read whole.
// Not a check of the logits (test_families.sh is).
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const files[] = { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json" };
    fuzz_hf_directory(data, size, files);
    return 0;
}

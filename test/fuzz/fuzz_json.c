// fuzz_json — export's JSON parser (config.json, tokenizer.json, safetensors
// headers, adapter_config.json) on arbitrary bytes, then a lookup and a free.
// Not a conformance suite: it looks for crashes, leaks and UB.
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *text = fuzz_copy_input(data, size, 1);   // NUL-terminated: strtod reads up to it
    FUZZ_BEGIN;
    Json root = json_parse((const char *)text, size, "fuzz.json");
    (void)json_get(&root, "model_type");
    json_free(&root);
    FUZZ_END;
    fuzz_free_input(text);
    return 0;
}

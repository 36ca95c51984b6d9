/*
export.c — turns a model into an Edge LLM checkpoint (the format runq.c
specifies), or into a GGUF file for llama.cpp.

    export --int4 [-z tokenizer.bin] stories15M.bin model.q4.bin     llama2.c legacy .bin
    export --fp32 path/to/hf-model-dir model.f32.bin                  Hugging Face directory
    export --int4 model.Q4_0.gguf model.q4.bin                        a llama.cpp GGUF file
    export --random tinyllama-1.1b model.q4.bin                       seeded random weights of a real shape
    export --gguf-q4_0 model.q4.bin model.gguf                        GGUF for llama.cpp: runq's very weights

Reads one tensor (in chunks of rows) at a time and writes it straight to its
place in the output, so a 7B model never sits in memory as fp32. Writes to a
temporary file beside the output and renames it at the end: an interrupted
export leaves no half file under the final name.

What it is: the command line over the converter's parts, each a header with
one job, included here in the order the data flows:
    runq.c                      the format, fp16, the tokenizer, the kernels
    json.h                      config.json, safetensors headers, tokenizer.json
    convert/quantize.h          float rows -> codes and scales
    convert/source.h            the output's plan; the Source interface
    convert/tokenizers.h        every tokenizer -> the embedded blob
    convert/sources.h           llama2.c .bin, Edge LLM checkpoint, random, dropped layers
    convert/hf.h                Hugging Face directory
    convert/lora.h              a LoRA adapter merged in
    convert/write_checkpoint.h  the checkpoint written
    convert/gguf_write.h        GGUF written for llama.cpp
    convert/gguf_read.h         GGUF read
    convert/open_source.h       which reader a path needs
    convert/gptq.h              a matrix rounded and pruned against its inputs' Hessian: GPTQ, SparseGPT, Wanda
    convert/calibrate.h         a text through the model: Block Influence, calibrated rounding, AWQ,
                                SmoothQuant, and GPTQ and pruning layer by layer
What it is not: a runtime. run.c and runq.c run what it writes.
*/

#ifndef PROGRAM_NAME
#define PROGRAM_NAME "export"
#endif
#ifndef TESTING
#define TESTING          // runq.c without its main
#define EXPORT_MAIN
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"   // export uses part of the runtime
#include "runq.c"
#pragma GCC diagnostic pop
#include "json.h"
#include "convert/quantize.h"
#include "convert/source.h"
#include "convert/tokenizers.h"
#include "convert/sources.h"
#include "convert/hf.h"
#include "convert/lora.h"
#include "convert/write_checkpoint.h"
#include "convert/gguf_write.h"
#include "convert/gguf_read.h"
#include "convert/open_source.h"
#include "convert/gptq.h"
#include "convert/calibrate.h"

// ----------------------------------------------------------------------------
// Command line

// general.name of a GGUF: the input's file or directory name, without its extension
static const char *model_name(const char *path) {
    static char name[256];
    snprintf(name, sizeof name, "%s", path);
    size_t length = strlen(name);
    while (length > 1 && name[length - 1] == '/') name[--length] = '\0';
    const char *slash = strrchr(name, '/');
    char *base = slash ? (char *)slash + 1 : name;
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = '\0';
    return base;
}

// "q3" or "3" -> TYPE_Q3 (any quantized type by its name, the dense ones by
// their bits: "4" is q4, not q4s); -1 if none.
static int parse_weight_type(const char *text) {
    for (uint32_t type = 0; type < N_MATRIX_TYPES; type++)
        if (quant_layout(type) && strcmp(text, quant_layout(type)->name) == 0) return (int)type;
    for (uint32_t type = 0; type < N_MATRIX_TYPES; type++) {
        const QuantLayout *layout = quant_layout(type);
        if (layout && type != TYPE_Q4S && atoi(text) == layout->bits && strspn(text, "q0123456789") == strlen(text))
            return (int)type;
    }
    return -1;
}

static int parse_group_size(const char *flag, const char *text) {
    int group_size = (int)parse_long(flag, text, 32, 256);
    if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256)
        die("%s: the group size must be 32, 64, 128 or 256, got '%s'", flag, text);
    return group_size;
}

static const Recipe *find_recipe(const char *name) {
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        if (strcmp(recipes[i].name, name) == 0) return &recipes[i];
    char names[128] = "";
    for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), " %s", recipes[i].name);
    die("--recipe %s is not a recipe; there are:%s", name, names);
    return NULL;
}

// --tensor-type 'w2=q8,layers.0.wv=8/64,output=q8': each NAME=TYPE[/GROUP]
// appended to the rules (checked against the model's tensors in make_plan).
static void parse_overrides(TypeRules *rules, const char *list) {
    char *copy = strdup(list);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        char *equals = strchr(item, '=');
        if (!equals || equals == item)
            die("--tensor-type: '%s' is not NAME=TYPE[/GROUP] (e.g. w2=q8,layers.0.wv=q4/64)", item);
        *equals = '\0';
        char *type_text = equals + 1, *slash = strchr(type_text, '/');
        if (slash) *slash = '\0';
        if (rules->n_overrides == MAX_OVERRIDES) die("--tensor-type: more than %d overrides", MAX_OVERRIDES);
        if (strlen(item) >= TENSOR_NAME_LEN) die("--tensor-type: the name '%s' is too long", item);
        TypeOverride *o = &rules->overrides[rules->n_overrides++];
        snprintf(o->name, sizeof o->name, "%s", item);
        o->type = parse_weight_type(type_text);
        if (o->type < 0) die("--tensor-type %s=%s: the type must be q8, q4, q3, q2 (or 8, 4, 3, 2) or q4s (2:4 sparse int4)", item,
                             type_text);
        o->group_size = slash ? parse_group_size("--tensor-type", slash + 1) : o->type == TYPE_Q4S ? Q4S_DEFAULT_GROUP : Q_BLOCK;
    }
    free(copy);
}

static int parse_prune_method(const char *text) {
    if (strcmp(text, "wanda") == 0) return PRUNE_WANDA;
    if (strcmp(text, "sparsegpt") == 0) return PRUNE_SPARSEGPT;
    die("--prune %s: the method must be wanda or sparsegpt", text);
    return PRUNE_NONE;
}

// --sparsity 0.5 (a share of the weights, above 0 and below 1) or 2:4.
static void parse_sparsity(Pruning *prune, const char *text) {
    if (strcmp(text, "2:4") == 0) { prune->two_of_four = 1; prune->fraction = 0.5; return; }
    char *end;
    errno = 0;
    double fraction = strtod(text, &end);
    if (errno || *end || end == text || !(fraction > 0 && fraction < 1))
        die("--sparsity %s: give the share pruned, above 0 and below 1 (0.5), or 2:4", text);
    prune->fraction = fraction;
}

// The compression options together: each needs a text, and some exclude others.
static void check_compression(CalibrationChoices *c, const char *sparsity, int awq, const CalibrationText *calib,
                              int gguf_type, int matrix_type) {
    const char *needs_text = c->gptq ? "--gptq" : c->prune.method ? "--prune" : c->smooth > 0 ? "--smooth" : NULL;
    if (needs_text && !calib->path) die("%s works on the activations of a text: give it with --calib FILE", needs_text);
    if (sparsity && !c->prune.method) die("--sparsity is the share --prune prunes: give --prune wanda or --prune sparsegpt");
    if (c->prune.method) parse_sparsity(&c->prune, sparsity ? sparsity : "0.5");
    if (c->smooth > 0 && awq) die("--smooth and --awq both scale the input channels: give one");
    if (c->gptq && (matrix_type == TYPE_F32 && gguf_type < 0))
        die("--gptq rounds int8/int4/int3/int2 matrices; an fp32 output has none (--prune with --fp32 writes the pruned model)");
    if (c->gptq && gguf_type >= 0 && gguf_type != GGML_TYPE_Q4_0)
        die("--gptq writes runq checkpoints or --gguf-q4_0 (runq's int4), not other GGUF types");
    if (c->prune.method && gguf_type >= 0) die("--prune writes runq checkpoints: not a GGUF output");
}

#ifdef EXPORT_MAIN
// export --check-config DIR|config.json: can export convert this model? From
// config.json alone, so a download can be refused before its weights come.
static int check_config(const char *path) {
    struct stat st;
    char *config_path = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path_join(path, "config.json") : strdup(path);
    if (!file_exists(config_path)) die("%s: no config.json (is this a Hugging Face model directory?)", path);
    Source src = { 0 };
    hf_config(&src, config_path);
    const FileHeader *h = &src.header;
    printf("%s: export converts it: dim %d, %d layers, %d/%d heads, head_dim %d, vocab %d, context %d%s\n", config_path,
           h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->head_dim, h->vocab_size, h->seq_len,
           src.rope_freqs ? ", RoPE scaled" : "");
    free(config_path);
    free_source(&src);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
        "Usage: export [--int4|--fp32|--gguf-q4_0|--gguf-q8_0|--gguf-f32] [options] INPUT OUTPUT\n"
        "       export --random SHAPE [--int4|--fp32|--gguf-...] [options] OUTPUT\n"
        "INPUT is a llama2.c .bin checkpoint, a Hugging Face model directory (config.json of\n"
        "Llama, Mistral, Qwen 2/2.5/3, Gemma 2/3, Phi-3.5/4-mini or SmolLM3; model.safetensors\n"
        "or model.safetensors.index.json; tokenizer.json), a GGUF file (architecture llama,\n"
        "qwen2, qwen3, gemma2, gemma3, phi3 or smollm3; tensors F32, F16, BF16, Q8_0, Q4_0,\n"
        "Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: all but Q4_0 dequantized and\n"
        "quantized again), or an Edge\n"
        "LLM checkpoint (re-exported: blocks are copied when the type and group size stay,\n"
        "else dequantized and quantized again).\n"
        "Options:\n"
        "  --int4            int4 group-quantized checkpoint for runq (default; --bits 4)\n"
        "  --bits B          every matrix int8, int4, int3 or int2 (B = 8, 4, 3, 2), group-quantized\n"
        "  --recipe NAME     mixed precision: q4-mixed, q3-mixed, q2-mixed (more bits for the classifier,\n"
        "                    wv and w2, as llama.cpp's Q4_K_M does; q2-mixed keeps embeddings at int4)\n"
        "  --tensor-type L   per-tensor types over the above, e.g. 'w2=q8,layers.0.wv=q4/64,output=8':\n"
        "                    NAME=TYPE[/GROUP], NAME a tensor or a layer field (wq wk wv wo w1 w2 w3);\n"
        "                    TYPE q8 q4 q3 q2, or q4s: 2:4 sparse int4 (two of every four weights kept;\n"
        "                    its group 64 unless named: 32 kept weights a scale)\n"
        "  --fp32            fp32 checkpoint for run\n"
        "  --gguf-q4_0       GGUF for llama.cpp, matrices Q4_0: runq's int4 weights (group 32) re-packed\n"
        "  --gguf-q8_0       GGUF for llama.cpp, matrices Q8_0\n"
        "  --gguf-f32        GGUF for llama.cpp, everything f32\n"
        "  --group-size N    weights per scale: 32, 64, 128 or 256 (default 32; a recipe's own)\n"
        "  -z FILE           tokenizer.bin to embed (overrides the directory's tokenizer.json)\n"
        "  --random SHAPE    seeded random weights: stories260K stories15M stories42M stories110M\n"
        "                    smollm2-135m tinyllama-1.1b llama2-7b mistral-7b llama3-8b qwen3-0.6b\n"
        "                    qwen2.5-1.5b gemma3-1b gemma2-2b phi4-mini smollm3-3b, or key=value pairs\n"
        "                    such as dim=64,ffn=172,layers=5,heads=8,kv_heads=4,vocab=512,family=gemma3\n"
        "  --seed N          seed for --random (default 42)\n"
        "  --lora DIR        merge a PEFT LoRA adapter (adapter_config.json, adapter_model.safetensors)\n"
        "  --adapter DIR     write the PEFT adapter in DIR, checked against INPUT, as a runq adapter\n"
        "                    file (runq --lora FILE applies it at run time) instead of a model\n"
        "  --drop-layers L   remove decoder layers, e.g. 3,7 (ShortGPT), or auto:N: the N with the\n"
        "                    least Block Influence on the --calib text (the ranking is printed)\n"
        "  --calib FILE      calibration text, read with the model's tokenizer: auto:N ranks layers\n"
        "                    on it, and rounding errors are weighted by each input channel's mean x^2\n"
        "  --awq             with --calib: AWQ, busy input channels scaled up before rounding and\n"
        "                    their inputs down (norms, wv, w3); with --fp32, the scaled model\n"
        "  --gptq            with --calib: GPTQ, columns rounded in order with each error spread\n"
        "                    through the inverse Hessian of the text's inputs (with --awq too)\n"
        "  --prune M         with --calib: prune the decoder layers' matrices, M wanda or sparsegpt\n"
        "  --sparsity S      with --prune: the share pruned (0.5), or 2:4 (int4 matrices become q4s/64)\n"
        "  --smooth A        with --calib: SmoothQuant, s_c = max|x_c|^A / max|w_c|^(1-A) folded\n"
        "                    into the norms (A in 0..1; not with --awq)\n"
        "  --calib-context T tokens per calibration window (default 256, at most the model's context)\n"
        "  --calib-windows N calibration windows read at most (default 16)\n"
        "  --check-config P  only read P (a model directory or its config.json): exit 0 if export\n"
        "                    converts this model, else say why (before downloading weights)\n"
        "  -q                no progress output\n");
    exit(EXIT_FAILURE);
}

int main(int argc, char **argv) {
    const char *random_shape = NULL, *tokenizer_path = NULL, *lora_dir = NULL, *drop_layers = NULL, *paths[2];
    const char *adapter_dir = NULL, *sparsity = NULL;
    int awq = 0;
    CalibrationChoices choices = { 0 };
    CalibrationText calib = { .path = NULL, .context = 256, .windows = 16 };
    int n_paths = 0, matrix_type = TYPE_Q4, group_size = 32, group_size_given = 0, quiet = 0, types_given = 0;
    TypeRules rules = { 0 };
    int gguf_type = -1;   // a GgmlType when writing GGUF
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (strcmp(a, "--int4") == 0) { matrix_type = TYPE_Q4; gguf_type = -1; }
        else if (strcmp(a, "--bits") == 0 && has_value) {
            matrix_type = parse_weight_type(argv[++i]);
            if (matrix_type < 0 || strchr(argv[i], 'q')) die("--bits must be 8, 4, 3 or 2, got '%s'", argv[i]);
            types_given = 1;
        } else if (strcmp(a, "--recipe") == 0 && has_value) { rules.recipe = find_recipe(argv[++i]); types_given = 1; }
        else if (strcmp(a, "--tensor-type") == 0 && has_value) { parse_overrides(&rules, argv[++i]); types_given = 1; }
        else if (strcmp(a, "--fp32") == 0) { matrix_type = TYPE_F32; gguf_type = -1; }
        else if (strcmp(a, "--gguf-q4_0") == 0) gguf_type = GGML_TYPE_Q4_0;
        else if (strcmp(a, "--gguf-q8_0") == 0) gguf_type = GGML_TYPE_Q8_0;
        else if (strcmp(a, "--gguf-f32") == 0) gguf_type = GGML_TYPE_F32;
        else if (strcmp(a, "-q") == 0) quiet = 1;
        else if (strcmp(a, "--group-size") == 0 && has_value) {
            group_size = parse_group_size("--group-size", argv[++i]);
            group_size_given = 1;
        } else if (strcmp(a, "-z") == 0 && has_value) tokenizer_path = argv[++i];
        else if (strcmp(a, "--random") == 0 && has_value) random_shape = argv[++i];
        else if (strcmp(a, "--check-config") == 0 && has_value) return check_config(argv[++i]);
        else if (strcmp(a, "--lora") == 0 && has_value) lora_dir = argv[++i];
        else if (strcmp(a, "--adapter") == 0 && has_value) adapter_dir = argv[++i];
        else if (strcmp(a, "--drop-layers") == 0 && has_value) drop_layers = argv[++i];
        else if (strcmp(a, "--calib") == 0 && has_value) calib.path = argv[++i];
        else if (strcmp(a, "--awq") == 0) awq = 1;
        else if (strcmp(a, "--gptq") == 0) choices.gptq = 1;
        else if (strcmp(a, "--prune") == 0 && has_value) choices.prune.method = parse_prune_method(argv[++i]);
        else if (strcmp(a, "--sparsity") == 0 && has_value) sparsity = argv[++i];
        else if (strcmp(a, "--smooth") == 0 && has_value) {
            choices.smooth = parse_float(a, argv[++i], 0, 1);
            if (!(choices.smooth > 0)) die("--smooth %s: alpha must be above 0 (0.5 is the paper's)", argv[i]);
        }
        else if (strcmp(a, "--calib-context") == 0 && has_value) calib.context = (int)parse_long(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--calib-windows") == 0 && has_value) calib.windows = (int)parse_long(a, argv[++i], 1, 1 << 20);
        else if (strcmp(a, "--seed") == 0 && has_value) {
            char *end;
            errno = 0;
            seed = strtoull(argv[++i], &end, 10);
            if (errno || *end || end == argv[i]) die("--seed expects a whole number, got '%s'", argv[i]);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "export: unknown option or missing value: %s\n", a);
            usage();
        } else if (n_paths < 2) paths[n_paths++] = a;
        else usage();
    }
    if (n_paths != (random_shape ? 1 : 2)) usage();
    const char *output = paths[n_paths - 1];
    if (adapter_dir && (lora_dir || gguf_type >= 0 || random_shape || calib.path))
        die("--adapter writes an adapter file alone: not with --lora, --calib, --random or a GGUF output");
    if (awq && !calib.path) die("--awq scales by the activations of a text: give it with --calib FILE");
    check_compression(&choices, sparsity, awq, &calib, gguf_type, matrix_type);
    if (gguf_type >= 0 && group_size_given)
        die("--group-size is for int4 checkpoints; GGUF Q4_0 and Q8_0 always have one scale per %d weights", Q_BLOCK);
    if (types_given && (gguf_type >= 0 || matrix_type == TYPE_F32 || adapter_dir))
        die("--bits, --recipe and --tensor-type choose runq checkpoint types: not with --fp32, --adapter or a GGUF "
            "output (--gguf-q4_0 is int4 at group 32, --gguf-q8_0 llama.cpp's own int8)");
    if (types_given && rules.recipe && matrix_type != TYPE_Q4)
        die("--bits and --recipe both choose every matrix's type: give one");
    rules.type = rules.recipe ? rules.recipe->type : matrix_type;
    rules.group_size = rules.recipe && !group_size_given ? rules.recipe->group_size : group_size;
    rules.sparse_int4 = choices.prune.two_of_four;

    Source src = { 0 };
    if (random_shape) open_random(&src, random_shape, seed);
    else open_source(&src, paths[0]);

    if (tokenizer_path) {
        free(src.tokenizer);
        read_tokenizer_bin(&src, tokenizer_path);
        source_add_input(&src, tokenizer_path);
    } else if (!src.tokenizer && random_shape) {
        synthetic_tokenizer(&src);
        if (!quiet)
            fprintf(stderr, "export: --random embeds a synthetic tokenizer (bytes, printable ASCII and <unused_N> "
                    "pieces): random weights write noise such as <unused_4605>; -z FILE embeds a real one\n");
    } else if (!src.tokenizer) {
        fprintf(stderr, "export: warning: no tokenizer given (-z); runq will need -z at run time\n");
    }
    // layers first: an adapter names the kept layers' new numbers
    if (drop_layers) drop_some_layers(&src, drop_layers, &calib, quiet);
    if (lora_dir) open_lora(&src, lora_dir);
    if (adapter_dir) {
        open_lora(&src, adapter_dir);
        write_adapter_file(&src, output);
        if (!quiet) fprintf(stderr, "export: wrote %s, a runq adapter (%s)\n", output, src.description);
        free_source(&src);
        return 0;
    }
    // last: the rounding is calibrated for the model as written
    int rounds = gguf_type == GGML_TYPE_Q4_0 || (gguf_type < 0 && rules.type != TYPE_F32);
    int ranks = drop_layers && strncmp(drop_layers, "auto:", 5) == 0;
    choices.awq = awq;
    choices.weighted = rounds;
    int transforms = awq || choices.smooth > 0 || choices.prune.method != PRUNE_NONE;
    if (calib.path && !rounds && !transforms && !ranks)
        die("--calib weighs the rounding of int8/int4/int3/int2 matrices (and ranks layers for --drop-layers "
            "auto:N); this output has none to round (--awq, --smooth or --prune with it write the scaled or pruned model)");
    if (calib.path && (rounds || transforms)) {
        TypeRules target = { .type = gguf_type == GGML_TYPE_Q8_0 ? TYPE_Q8 : TYPE_Q4, .group_size = Q_BLOCK };
        if (gguf_type < 0 && !rounds) target = (TypeRules){ .type = TYPE_F32, .group_size = Q_BLOCK };
        // an fp32 output is rounded later without --calib: AWQ then searches for unweighted int4 of group 32
        TypeRules awq_target = { .type = TYPE_Q4, .group_size = Q_BLOCK };
        open_calibrated(&src, &calib, gguf_type < 0 && rounds ? &rules : awq && !rounds ? &awq_target : &target, &choices, quiet);
    }
    char format[64];
    snprintf(format, sizeof format, "%s", matrix_type == TYPE_F32 ? "fp32" : rules.recipe ? rules.recipe->name
             : rules.n_overrides ? "mixed" : matrix_type == TYPE_Q4 ? "int4" : quant_layout((uint32_t)matrix_type)->name);
    double bits = 0;
    if (gguf_type >= 0) {
        snprintf(format, sizeof format, "%s",
                 gguf_type == GGML_TYPE_Q4_0 ? "GGUF q4_0" : gguf_type == GGML_TYPE_Q8_0 ? "GGUF q8_0" : "GGUF f32");
        write_gguf(&src, output, (uint32_t)gguf_type, random_shape ? random_shape : model_name(paths[0]), quiet);
    } else {
        bits = write_checkpoint_with(&src, output, &rules, quiet);
    }
    if (!quiet) {
        const FileHeader *h = &src.header;
        fprintf(stderr, "export: wrote %s (%s, %s): dim %d, %d layers, %d/%d heads, vocab %d, context %d%s%s\n", output,
                src.description, format, h->dim, h->n_layers, h->n_heads, h->n_kv_heads, h->vocab_size, h->seq_len,
                src.rope_freqs ? ", RoPE scaled (rope_freqs)" : "", src.tokenizer ? ", tokenizer embedded" : "");
        if (bits > 0) fprintf(stderr, "export: %.3f bits per weight over the quantized matrices\n", bits);
    }
    free_source(&src);
    return 0;
}
#endif

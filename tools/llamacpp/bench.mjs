// bench.mjs — llama.cpp's side of tools/bench-vs-llamacpp, through node-llama-cpp's
// prebuilt CPU binaries. One run: load a GGUF with N threads, evaluate the given
// prompt token ids (prefill and time to first token), then decode a fixed number
// of tokens greedily, never stopping at EOS. Prints on stderr the same stats line
// runq prints, and on stdout one JSON object with the run's settings.
//
//   node bench.mjs --model x.gguf --threads 2 --ids "1 259 275 ..." --decode 64 [--text "..."]
//
// --text: the prompt the ids came from; llama.cpp's own tokenization of it is
// compared with the ids (a check of the GGUF's tokenizer metadata), never used.
//
// llama.cpp's defaults for a CPU run are kept (mmap, batch size, flash attention
// "auto", weight repacking); only the thread count and the context size (prompt
// + decode, as runq sizes its KV cache) are set. Nothing is downloaded or built:
// build "never" fails instead of compiling, skipDownload forbids fetching sources.
//
// What a Node application gets, which is not always what llama.cpp can do: on
// a 2-core machine with 2 threads, decoding here ran 7-10x slower than the same
// libraries driven from C (bench-native.c), so tools/bench-vs-llamacpp compares
// runq with that driver and reports these figures beside it.

const baselineRssKb = Math.round(process.memoryUsage().rss / 1024);   // node alone, before llama.cpp loads

function parseArgs(argv) {
    const args = {};
    for (let i = 0; i < argv.length; i += 2) {
        if (!argv[i].startsWith("--") || i + 1 >= argv.length) throw new Error(`bench.mjs: bad argument '${argv[i]}'`);
        args[argv[i].slice(2)] = argv[i + 1];
    }
    for (const required of ["model", "threads", "ids", "decode"])
        if (args[required] === undefined) throw new Error(`bench.mjs: --${required} is required`);
    return args;
}

const args = parseArgs(process.argv.slice(2));
const threads = Number(args.threads), decode = Number(args.decode);
const ids = args.ids.trim().split(/\s+/).map(Number);
if (!Number.isInteger(threads) || threads < 1 || !Number.isInteger(decode) || decode < 1 || ids.some(id => !Number.isInteger(id)))
    throw new Error("bench.mjs: --threads and --decode must be positive whole numbers, --ids whole numbers");

const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
const now = () => performance.now();

const libStart = now();
const llama = await getLlama({
    gpu: false,                 // the CPU build only
    build: "never",             // use the prebuilt binary; never compile llama.cpp
    skipDownload: true,         // never fetch llama.cpp sources
    usePrebuiltBinaries: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: LlamaLogLevel.error,
});
if (llama.gpu !== false) throw new Error(`bench.mjs: expected the CPU backend, got gpu=${llama.gpu}`);
const libMs = now() - libStart;

const loadStart = now();
const model = await llama.loadModel({modelPath: args.model, gpuLayers: 0});
const context = await model.createContext({contextSize: ids.length + decode + 1, threads, sequences: 1});
const sequence = context.getSequence();
const loadMs = now() - loadStart;

let tokenizerAgrees = null;
if (args.text !== undefined) {
    const own = [model.tokens.bos, ...model.tokenize(args.text)];
    tokenizerAgrees = own.length === ids.length && own.every((id, i) => id === ids[i]);
}

// Each step of the generator evaluates the previous token (the whole prompt,
// first) and samples the next, so the first yield is the time to first token.
const start = now();
let firstToken = start, generated = 0;
for await (const token of sequence.evaluate(ids, {temperature: 0, yieldEogToken: true})) {
    if (generated === 0) firstToken = now();
    if (++generated > decode) break;
}
const end = now();
if (generated <= decode) throw new Error(`bench.mjs: generation stopped after ${generated} tokens`);

const promptMs = firstToken - start, decodeMs = end - firstToken;
const fixed = (x, digits) => x.toFixed(digits);
process.stderr.write(`stats: load_ms=${fixed(loadMs, 1)} prompt_tokens=${ids.length} prompt_ms=${fixed(promptMs, 1)} ` +
    `prompt_tok_s=${fixed(ids.length / promptMs * 1000, 2)} ttft_ms=${fixed(promptMs, 1)} decode_tokens=${decode} ` +
    `decode_ms=${fixed(decodeMs, 1)} decode_tok_s=${fixed(decode / decodeMs * 1000, 2)}\n`);
const peakRssKb = process.resourceUsage().maxRSS;
console.log(JSON.stringify({
    lib_ms: Number(fixed(libMs, 1)), load_ms: Number(fixed(loadMs, 1)), prompt_tokens: ids.length,
    prompt_ms: Number(fixed(promptMs, 1)), ttft_ms: Number(fixed(promptMs, 1)), decode_tokens: decode,
    decode_ms: Number(fixed(decodeMs, 1)), peak_rss_kb: peakRssKb, node_baseline_rss_kb: baselineRssKb,
    tokenizer_agrees: tokenizerAgrees, threads: context.currentThreads, context_size: context.contextSize,
    batch_size: context.batchSize, flash_attention: context.flashAttention, mmap: model.useMmap,
    build: llama.buildType, cpu: llama.systemInfo.trim(),
}));
await context.dispose();
await model.dispose();
await llama.dispose();

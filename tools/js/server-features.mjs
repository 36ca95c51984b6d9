// server-features.mjs — the official `openai` package against ./server's
// structured output, tool calls, log-probabilities and n > 1
// (test/test_server.sh). Prints one line per check, "ok: ..." or "FAIL: ...",
// and exits 1 on a failure.
//   node tools/js/server-features.mjs URL/v1 default MODEL LOGITS_BIN   the schema on 50 seeds, json_object, logprobs, n
//   node tools/js/server-features.mjs URL/v1 random                     the schema on 50 seeds, a tool call round trip
//   node tools/js/server-features.mjs URL/v1 tools                      a tool call round trip alone (a family's own format)
// (a random-weight model shows the grammar, not the model, keeps the output valid; its larger context holds the tools)
// LOGITS_BIN is build/logits: the model's own logits, to hold the reported log-probabilities to.
// The JSON Schema validator is ajv (an independent implementation), not the server's grammar.
// Not a benchmark: speed is tools/bench-server's.
import OpenAI from 'openai';
import Ajv from 'ajv';
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [baseURL, mode, ...rest] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
const root = baseURL.replace(/\/v1$/, '');
let failed = 0;
const check = (name, good, detail = '') => {
    console.log(`${good ? 'ok' : 'FAIL'}: ${name}${good ? '' : ' ' + detail}`);
    if (!good) failed++;
};
const ajv = new Ajv({ strict: true, allErrors: true });

// Every kind the converter handles: nested objects, arrays of enums, integers,
// numbers, booleans, bounded strings, a required and an optional property.
// Bounded, so even a random model's output ends inside max_tokens.
const petSchema = {
    type: 'object',
    properties: {
        name: { type: 'string', minLength: 1, maxLength: 12 },
        age: { type: 'integer' },
        weight: { type: 'number' },
        indoor: { type: 'boolean' },
        colors: { type: 'array', items: { type: 'string', enum: ['black', 'white', 'orange'] }, minItems: 1, maxItems: 3 },
        owner: {
            type: 'object',
            properties: { first: { type: 'string', maxLength: 8 }, city: { type: ['string', 'null'], maxLength: 8 } },
            required: ['first'],
            additionalProperties: false,
        },
        kind: { enum: ['cat', 'dog', 7] },
    },
    required: ['name', 'age', 'indoor', 'colors', 'owner', 'kind'],
    additionalProperties: false,
};

async function schemaSeeds(seeds) {
    const validate = ajv.compile(petSchema);
    const model = (await client.models.list()).data[0].id;
    let valid = 0, finished = 0;
    const bad = [];
    for (let seed = 1; seed <= seeds; seed++) {
        const reply = await client.chat.completions.create({
            model, seed, temperature: 1, max_tokens: 400,
            messages: [{ role: 'user', content: 'Describe a pet as JSON.' }],
            response_format: { type: 'json_schema', json_schema: { name: 'pet', schema: petSchema, strict: true } },
        });
        const choice = reply.choices[0];
        if (choice.finish_reason === 'stop') finished++;
        try {
            const value = JSON.parse(choice.message.content);
            if (validate(value)) valid++;
            else bad.push(`seed ${seed}: ${ajv.errorsText(validate.errors)}: ${choice.message.content}`);
        } catch (error) {
            bad.push(`seed ${seed}: not JSON (${error.message}): ${JSON.stringify(choice.message.content)}`);
        }
    }
    check(`response_format json_schema: ${valid} of ${seeds} seeds parse and validate (ajv)`, valid === seeds, bad.slice(0, 3).join(' | '));
    check(`response_format json_schema: ${finished} of ${seeds} end where the grammar ends (finish_reason stop)`, finished === seeds);
}

async function jsonObject() {
    const reply = await client.chat.completions.create({
        model: 'x', seed: 3, max_tokens: 300, messages: [{ role: 'user', content: 'JSON please' }],
        response_format: { type: 'json_object' },
    });
    let value;
    try { value = JSON.parse(reply.choices[0].message.content); } catch (error) { value = error.message; }
    check('response_format json_object gives a JSON object', typeof value === 'object' && value !== null && !Array.isArray(value)
          || reply.choices[0].finish_reason === 'length', JSON.stringify(reply.choices[0]));
}

async function toolRoundTrip() {
    const parameters = {
        type: 'object',
        properties: { city: { type: 'string', minLength: 1, maxLength: 10 }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
        required: ['city', 'unit'],
        additionalProperties: false,
    };
    const tools = [
        { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters } },
        { type: 'function', function: { name: 'get_time', description: 'The time', parameters: { type: 'object', properties: {} } } },
    ];
    const validate = ajv.compile(parameters);
    const messages = [{ role: 'system', content: 'You help.' }, { role: 'user', content: 'What is the weather in Paris?' }];
    const first = await client.chat.completions.create({
        model: 'x', seed: 11, max_tokens: 400, messages, tools, parallel_tool_calls: false,
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const choice = first.choices[0], calls = choice.message.tool_calls ?? [];
    check('a forced tool call ends with finish_reason tool_calls', choice.finish_reason === 'tool_calls', JSON.stringify(choice));
    check('the call names the tool and has an id', calls.length >= 1 && calls[0].function.name === 'get_weather' && calls[0].type === 'function'
          && typeof calls[0].id === 'string', JSON.stringify(calls));
    let args = null;
    try { args = JSON.parse(calls[0]?.function.arguments); } catch (error) { args = null; }
    check('its arguments validate against the tool\'s schema', args !== null && validate(args), calls[0]?.function.arguments);
    // the round trip: the assistant's call (content null) and the tool's result go back in
    messages.push({ role: 'assistant', content: null, tool_calls: calls });
    messages.push({ role: 'tool', tool_call_id: calls[0]?.id ?? 'x', content: JSON.stringify({ temperature: 21, unit: 'celsius' }) });
    const second = await client.chat.completions.create({ model: 'x', seed: 12, max_tokens: 20, messages, tools, tool_choice: 'none' });
    const answer = second.choices[0];
    check('the reply after the tool\'s result is text', typeof answer.message.content === 'string' && !answer.message.tool_calls
          && ['stop', 'length'].includes(answer.finish_reason), JSON.stringify(answer));
    // streamed: the call arrives as tool_calls deltas
    const stream = await client.chat.completions.create({ model: 'x', seed: 11, max_tokens: 600, stream: true, messages: messages.slice(0, 2),
                                                          tools, tool_choice: 'required' });
    const streamedCalls = [];
    let finish = null;
    for await (const chunk of stream) {
        for (const call of chunk.choices[0]?.delta?.tool_calls ?? []) {
            const into = streamedCalls[call.index] ??= { name: '', args: '' };
            into.name += call.function?.name ?? '';
            into.args += call.function?.arguments ?? '';
        }
        finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    const wellFormed = streamedCalls.length > 0 && streamedCalls.every((call) => {
        try { JSON.parse(call.args); return ['get_weather', 'get_time'].includes(call.name); } catch (error) { return false; }
    });
    check('streamed tool calls arrive as tool_calls deltas, each whole', finish === 'tool_calls' && wellFormed, `${finish} ${JSON.stringify(streamedCalls)}`);
}

// The reported log-probabilities against the model's own softmax, from build/logits.
async function logprobs(modelPath, logitsBinary) {
    const prompt = 'Once upon a time';
    const reply = await client.completions.create({ model: 'x', prompt, max_tokens: 6, temperature: 0, logprobs: 5 });
    const lp = reply.choices[0].logprobs;
    const chat = await client.chat.completions.create({ model: 'x', max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 5,
                                                        messages: [{ role: 'user', content: 'Hello' }] });
    const chatItems = chat.choices[0].logprobs?.content ?? [];
    check('chat logprobs: one item per token, each with 5 alternatives', chatItems.length === chat.usage.completion_tokens
          && chatItems.every((item) => item.top_logprobs.length === 5 && Array.isArray(item.bytes)), JSON.stringify(chatItems[0]));
    const sums = [...lp.top_logprobs.map((top) => Object.values(top)), ...chatItems.map((item) => item.top_logprobs.map((t) => t.logprob))]
        .map((values) => values.reduce((sum, v) => sum + Math.exp(v), 0));
    check('the top log-probabilities sum to at most 1', sums.length > 0 && sums.every((s) => s <= 1 + 1e-5), JSON.stringify(sums));
    // the ids of the prompt and of the greedy tokens (llama.cpp's n_probs names them)
    const post = async (path, body) => (await fetch(root + path, { method: 'POST', body: JSON.stringify(body) })).json();
    const ids = (await post('/tokenize', { content: prompt, add_special: true })).tokens;
    const llama = await post('/completion', { prompt, n_predict: 6, temperature: 0, n_probs: 5 });
    const generated = llama.completion_probabilities.map((p) => p.id);
    check('the same greedy tokens by both APIs', llama.completion_probabilities.map((p) => p.token).join('') === lp.tokens.join(''),
          `${JSON.stringify(lp.tokens)} vs ${JSON.stringify(llama.completion_probabilities.map((p) => p.token))}`);
    const scratch = mkdtempSync(join(tmpdir(), 'edge-logprobs-'));
    const file = join(scratch, 'logits.bin');
    execFileSync(logitsBinary, [modelPath, file, ...[...ids, ...generated].map(String)], { stdio: 'pipe' });
    const all = new Float32Array(readFileSync(file).buffer.slice(0));
    rmSync(scratch, { recursive: true });
    const vocab = all.length / (ids.length + generated.length);
    let worst = 0, topMismatch = 0;
    for (let j = 0; j < generated.length; j++) {
        const row = all.subarray((ids.length - 1 + j) * vocab, (ids.length + j) * vocab);
        const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
        const logSum = Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) + max;
        worst = Math.max(worst, Math.abs(row[generated[j]] - logSum - lp.token_logprobs[j]));
        const best = [...row.keys()].sort((a, b) => row[b] - row[a]).slice(0, 5);
        const reported = llama.completion_probabilities[j].top_logprobs.map((t) => t.id);
        if (best.join() !== reported.join()) topMismatch++;
        llama.completion_probabilities[j].top_logprobs.forEach((t) => { worst = Math.max(worst, Math.abs(row[t.id] - logSum - t.logprob)); });
    }
    check(`logprobs match the model's softmax (largest difference ${worst.toExponential(2)})`, worst < 1e-3 && generated.length === 6, `${worst}`);
    check('the top 5 are the model\'s 5 most likely tokens, in order', topMismatch === 0, `${topMismatch} of ${generated.length} steps differ`);
    // streamed: the same values, chunk by chunk
    const stream = await client.completions.create({ model: 'x', prompt, max_tokens: 6, temperature: 0, logprobs: 5, stream: true });
    const streamed = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
    check('streamed logprobs equal the unstreamed ones', JSON.stringify(streamed) === JSON.stringify(lp.token_logprobs),
          `${JSON.stringify(streamed)} vs ${JSON.stringify(lp.token_logprobs)}`);
}

async function choices() {
    const reply = await client.chat.completions.create({ model: 'x', n: 3, seed: 5, max_tokens: 12, messages: [{ role: 'user', content: 'Hi' }] });
    check('n: 3 gives three choices, indexed 0-2', reply.choices.length === 3 && reply.choices.every((c, i) => c.index === i
          && typeof c.message.content === 'string'), JSON.stringify(reply.choices));
    check('n: 3 usage counts every choice\'s tokens', reply.usage.completion_tokens <= 36 && reply.usage.completion_tokens >= 3, JSON.stringify(reply.usage));
    const again = await client.chat.completions.create({ model: 'x', n: 3, seed: 5, max_tokens: 12, messages: [{ role: 'user', content: 'Hi' }] });
    check('n: 3 with a seed is reproducible', JSON.stringify(again.choices.map((c) => c.message.content)) === JSON.stringify(reply.choices.map((c) => c.message.content)));
    const stream = await client.chat.completions.create({ model: 'x', n: 3, seed: 5, max_tokens: 12, stream: true, stream_options: { include_usage: true },
                                                          messages: [{ role: 'user', content: 'Hi' }] });
    const texts = ['', '', ''];
    let usage = null;
    for await (const chunk of stream) {
        for (const c of chunk.choices) texts[c.index] += c.delta?.content ?? '';
        if (chunk.usage) usage = chunk.usage;
    }
    check('n: 3 streamed equals unstreamed, choice by choice', JSON.stringify(texts) === JSON.stringify(reply.choices.map((c) => c.message.content)),
          JSON.stringify(texts));
    check('stream_options.include_usage sends usage', usage && usage.completion_tokens === reply.usage.completion_tokens, JSON.stringify(usage));
}

if (mode !== 'tools') await schemaSeeds(50);
if (mode === 'random' || mode === 'tools') {
    await toolRoundTrip();
} else {
    await jsonObject();
    await logprobs(rest[0], rest[1]);
    await choices();
}
process.exit(failed ? 1 : 0);

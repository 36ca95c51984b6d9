// server-client.mjs — the official `openai` package as a real client of ./server
// (test/test_server.sh): chat completions, streaming and not, plus the model
// list. Prints one line per check, "ok: ..." or "FAIL: ...", and exits 1 on a failure.
//   node tools/js/server-client.mjs http://127.0.0.1:PORT/v1 [api-key]
import OpenAI from 'openai';

const [baseURL, apiKey = 'unused'] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
let failed = 0;
const check = (name, good, detail = '') => {
    console.log(`${good ? 'ok' : 'FAIL'}: ${name}${good ? '' : ' ' + detail}`);
    if (!good) failed++;
};
const messages = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Once upon a time' }];

const models = await client.models.list();
check('models.list names one model', models.data.length === 1 && typeof models.data[0].id === 'string', JSON.stringify(models.data));

const reply = await client.chat.completions.create({ model: models.data[0].id, messages, max_tokens: 24, seed: 7, temperature: 0.8 });
const text = reply.choices[0].message.content;
check('chat completion has text', reply.choices[0].message.role === 'assistant' && typeof text === 'string' && text.length > 0, JSON.stringify(reply));
check('chat completion usage adds up', reply.usage.total_tokens === reply.usage.prompt_tokens + reply.usage.completion_tokens,
      JSON.stringify(reply.usage));

const stream = await client.chat.completions.create({ model: models.data[0].id, messages, max_tokens: 24, seed: 7, temperature: 0.8, stream: true });
let streamed = '', chunks = 0, finish = null;
for await (const chunk of stream) {
    chunks++;
    streamed += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
}
check('streamed chat arrives in chunks', chunks > 2, `${chunks} chunks`);
check('streamed chat equals the same request unstreamed', streamed === text, `${JSON.stringify(streamed)} vs ${JSON.stringify(text)}`);
check('streamed chat ends with a finish reason', finish === 'length' || finish === 'stop', String(finish));

try {
    await client.chat.completions.create({ model: 'x', messages: 'not an array' });
    check('a bad request is an error', false, 'no error thrown');
} catch (error) {
    check('a bad request is an error', error.status === 400, String(error));
}
process.exit(failed ? 1 : 0);

// server_page.mjs — drives the page of ./server in headless Chromium over the
// DevTools protocol (test/test_server.sh), as a person would, and keeps a
// screenshot of each step under SHOTS.
//   node --experimental-websocket test/server_page.mjs chat URL CHROMIUM PROFILE_DIR SHOTS
//     a chat model: three turns (Send disabled while each streams), a stop
//     mid-reply, an error (a message too long for the context) that leaves
//     the conversation usable, a new chat
//   node --experimental-websocket test/server_page.mjs completion URL CHROMIUM PROFILE_DIR SHOTS
//     a model without a chat template: a completion box whose text goes on
// Prints one line per check, "ok: ..." or "FAIL: ...", then a JSON summary;
// exits 1 on a failure. Node 20 needs --experimental-websocket.
// It is not a browser test framework: a few DevTools calls, nothing installed.
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';

const [mode, url, chromium, profile, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--window-size=900,900',
    '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
let failed = 0;
const summary = {};
const check = (name, good, detail = '') => {
    console.log(`${good ? 'ok' : 'FAIL'}: ${name}${good ? '' : ' ' + detail}`);
    if (!good) failed++;
};
const finish = (why) => {
    if (why) check(why, false);
    console.log(JSON.stringify(summary));
    browser.kill('SIGKILL');
    process.exit(failed ? 1 : 0);
};
setTimeout(() => finish('timed out after 90 s'), 90000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// the browser prints its DevTools address on stderr
const devtools = await new Promise((resolve) => {
    let seen = '';
    browser.stderr.on('data', (chunk) => {
        seen += chunk;
        const match = seen.match(/DevTools listening on ws:\/\/([^/]+)\//);
        if (match) resolve(match[1]);
    });
    browser.on('exit', () => finish(`chromium exited: ${seen.slice(-400)}`));
});
const target = await (await fetch(`http://${devtools}/json/new?${url}`, { method: 'PUT' })).json();
const socket = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve) => socket.addEventListener('open', resolve));
let nextId = 0;
const pending = new Map();
socket.addEventListener('message', (event) => {
    const message = JSON.parse(event.data);
    if (pending.has(message.id)) { pending.get(message.id)(message); pending.delete(message.id); }
});
const call = (method, params = {}) => new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, resolve);
    socket.send(JSON.stringify({ id, method, params }));
});
// the value of a JavaScript expression in the page
const evaluate = async (expression) => (await call('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })).result?.result?.value;
const screenshot = async (name) => {
    const shot = await call('Page.captureScreenshot', { format: 'png' });
    writeFileSync(`${shots}/${name}.png`, Buffer.from(shot.result.data, 'base64'));
};
const until = async (expression, ms = 20000) => {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) if (await evaluate(expression)) return true;
    return false;
};
const lastReply = `(() => { const r = [...document.querySelectorAll('#log > div')].filter((d) => d.className !== 'user' && d.className !== 'note').pop();
    return r ? { cls: r.className, text: r.textContent, done: r.dataset.done === '1' } : null; })()`;

await until("document.body.dataset.ready === '1'");
const header = await evaluate("document.getElementById('model').textContent");

async function send(text) {
    await evaluate(`(() => { const p = document.getElementById('prompt'); p.value = ${JSON.stringify(text)};
        document.getElementById('form').requestSubmit(); return true; })()`);
}

if (mode === 'chat') {
    check('the header names the model, its context and template (from /props)', /tinystories-edge.*positions.*chat template/.test(header), header);
    await evaluate("document.getElementById('max').value = '24'; document.getElementById('temp').value = '0'; true");
    const replies = [];
    for (const [i, text] of ['Tell me a story about a cat', 'What did the cat do next?', 'And then?'].entries()) {
        const before = await evaluate("document.querySelectorAll('#log > div').length");
        await send(text);
        await until(`document.querySelectorAll('#log > div').length > ${before}`);
        const disabled = await evaluate("document.getElementById('send').disabled && !document.getElementById('stop').disabled");
        await until(`(${lastReply}).done`);
        const state = await evaluate(lastReply);
        replies.push(state);
        check(`turn ${i + 1}: Send is disabled while the reply streams, Stop enabled`, disabled === true);
        check(`turn ${i + 1}: a reply arrives`, state.cls === 'assistant' && state.text.length > 0, JSON.stringify(state));
        await screenshot(`chat-turn-${i + 1}`);
    }
    // the same three turns through the API give the same replies (temperature 0): the page keeps the history right
    const messages = [];
    let same = true;
    for (const [i, text] of ['Tell me a story about a cat', 'What did the cat do next?', 'And then?'].entries()) {
        messages.push({ role: 'user', content: text });
        const r = await (await fetch(url + 'v1/chat/completions', { method: 'POST', body: JSON.stringify({ messages, max_tokens: 24, temperature: 0 }) })).json();
        const content = r.choices[0].message.content;
        same = same && content === replies[i].text;
        messages.push({ role: 'assistant', content });
    }
    check('the page\'s three replies are the API\'s for the same conversation', same, JSON.stringify(replies.map((r) => r.text)));
    const history = await evaluate('messages.length');
    check('the history holds three turns', history === 6, String(history));

    // a stop mid-reply: the partial reply stays, Send comes back
    await evaluate("document.getElementById('max').value = '200'; true");
    await send('Tell me a long story');
    await until(`(${lastReply})?.text.length > 3 && !(${lastReply}).done`);
    await evaluate("document.getElementById('stop').click(); true");
    const stopped = await until(`(${lastReply}).done && !document.getElementById('send').disabled`);
    const afterStop = await evaluate(lastReply);
    check('Stop ends the reply and gives Send back', stopped && afterStop.cls === 'assistant', JSON.stringify(afterStop));
    check('the stopped reply is kept as the reply', await evaluate('messages.length') === 8 && await evaluate('messages[7].content') === afterStop.text);
    await screenshot('chat-stopped');

    // an error: a message too long for the context; the conversation stays as it was, and works
    await evaluate("document.getElementById('max').value = '24'; true");
    await send('word '.repeat(600));
    await until(`(${lastReply})?.done`);
    const error = await evaluate(lastReply);
    check('a failed turn shows its error', error.cls === 'error' && /context/.test(error.text), JSON.stringify(error));
    check('the failed turn leaves no trace in the history', await evaluate('messages.length') === 8);
    await screenshot('chat-error');
    await send('Thank you');
    await until(`(${lastReply}).done && (${lastReply}).cls !== 'error'`);
    const recovered = await evaluate(lastReply);
    check('the next message after the error is answered', recovered.cls === 'assistant' && recovered.text.length > 0 && await evaluate('messages.length') === 10,
          JSON.stringify(recovered));
    const wraps = await evaluate("(() => { const log = document.getElementById('log'); return log.scrollWidth <= log.clientWidth + 1; })()");
    check('long text wraps inside the box', wraps === true);
    await screenshot('chat-recovered');

    // a new chat empties the conversation
    await evaluate("document.getElementById('new').click(); true");
    check('New chat empties the log and the history', await evaluate("messages.length === 0 && document.querySelectorAll('#log > div').length === 0"));
    await evaluate("document.getElementById('max').value = ''; document.getElementById('temp').value = ''; true");
    await send('Hello again');
    await until(`(${lastReply})?.done`);
    const fresh = await evaluate(lastReply);
    check('empty fields use the server\'s defaults (a reply, not an empty one)', fresh.cls === 'assistant' && fresh.text.length > 0, JSON.stringify(fresh));
    await screenshot('chat-new');
    summary.replies = replies.map((r) => r.text);
} else {
    check('without a chat template the header says the page completes text', /no chat template/.test(header), header);
    const box = await evaluate("document.getElementById('prompt').tagName + ' ' + document.getElementById('send').textContent");
    check('a completion box instead of a chat', box === 'TEXTAREA Complete', box);
    await evaluate("document.getElementById('max').value = '20'; document.getElementById('temp').value = '0'; true");
    await send('Once upon a time');
    await until(`(${lastReply})?.done`);
    const value = await evaluate("document.getElementById('prompt').value");
    const r = await (await fetch(url + 'completion', { method: 'POST', body: JSON.stringify({ prompt: 'Once upon a time', n_predict: 20, temperature: 0 }) })).json();
    check('the completion continues the text in the box, as /completion does', value === 'Once upon a time' + r.content && r.content.length > 0, value);
    await screenshot('completion');
}
finish();

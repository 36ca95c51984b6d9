// server_page.mjs — drives the chat page of ./server in headless Chromium
// over the DevTools protocol (test/test_server.sh): types a prompt, sends it,
// and watches the reply grow as tokens arrive. Node 20 needs
// --experimental-websocket for its WebSocket. Prints
//   {"text": final reply, "lengths": distinct reply lengths seen, "error": ...}
//   node --experimental-websocket test/server_page.mjs URL CHROMIUM PROFILE_DIR
// It is not a browser test framework: a few DevTools calls, nothing installed.
import { spawn } from 'node:child_process';

const [url, chromium, profile] = process.argv.slice(2);
const browser = spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
const finish = (result) => { console.log(JSON.stringify(result)); browser.kill('SIGKILL'); process.exit(result.error ? 1 : 0); };
setTimeout(() => finish({ error: 'timed out after 30 s' }), 30000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// the browser prints its DevTools address on stderr
const devtools = await new Promise((resolve) => {
    let seen = '';
    browser.stderr.on('data', (chunk) => {
        seen += chunk;
        const match = seen.match(/DevTools listening on ws:\/\/([^/]+)\//);
        if (match) resolve(match[1]);
    });
    browser.on('exit', () => finish({ error: `chromium exited: ${seen.slice(-400)}` }));
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
// the value of a JavaScript expression in the page
const evaluate = (expression) => new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, (message) => resolve(message.result?.result?.value));
    socket.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression, returnByValue: true } }));
});

while (!(await evaluate("document.readyState === 'complete' && !!document.getElementById('form')"))) await sleep(50);
await evaluate(`document.getElementById('prompt').value = 'Once upon a time';
    document.getElementById('max').value = '40'; document.getElementById('temp').value = '0';
    document.getElementById('form').requestSubmit(); true`);
const lengths = [];
for (;;) {
    const state = await evaluate(`(() => { const r = [...document.querySelectorAll('#log > div')].pop();
        return r && { cls: r.className, text: r.textContent, done: r.dataset.done === '1' }; })()`);
    if (state && state.cls !== 'user' && !lengths.includes(state.text.length)) lengths.push(state.text.length);
    if (state?.done) finish(state.cls === 'assistant' ? { text: state.text, lengths } : { error: state.text, lengths });
    await sleep(15);
}

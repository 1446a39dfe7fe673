// The Node side of spantune's `node:DIR` eval system (spantune/infer/node_backend.py): src/corrector.js answers
// span examples in Node as the browser does, so `spantune eval` and the demo measure Transformers.js like any backend.
// usage: node node_harness.mjs --model DIR --dtype DTYPE --max-new-tokens N --keep-margin NATS [--score-keep]
//   Loads the model and prints {"load_ms", "node"}; then answers each span example read from stdin (one JSON line)
//   with one JSON line {raw, text, overrun, verbose, fallback, tokens, latency_ms[, kept, keep_logprob,
//   answer_logprob, edit_preference]}. stdout carries only these lines (messages go to stderr); the end of stdin
//   ends it.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { createSpanCorrector } from '../src/index.js';

console.log = console.info = console.debug = console.error; // stdout is the protocol
const { values: opts } = parseArgs({
  options: {
    model: { type: 'string' },
    dtype: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    'keep-margin': { type: 'string' },
    'score-keep': { type: 'boolean', default: false },
  },
});
if (!opts.model || !opts.dtype || !opts['max-new-tokens'] || !opts['keep-margin']) {
  console.error('usage: node node_harness.mjs --model DIR --dtype DTYPE --max-new-tokens N --keep-margin NATS ' +
    '[--score-keep]');
  process.exit(2);
}
const send = (record) => process.stdout.write(JSON.stringify(record) + '\n');

const t0 = performance.now();
const corrector = await createSpanCorrector({
  modelPath: opts.model,
  dtype: opts.dtype,
  device: 'cpu',
  maxNewTokens: Number(opts['max-new-tokens']),
  keepMargin: Number(opts['keep-margin']),
  scoreKeep: opts['score-keep'],
});
send({ load_ms: performance.now() - t0, node: process.version });
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (!line.trim()) continue;
  const r = await corrector.correct(JSON.parse(line));
  send({ raw: r.raw, text: r.text, overrun: r.overrun, verbose: r.verbose, fallback: r.fallback, tokens: r.tokens,
         latency_ms: r.latencyMs, kept: r.kept, keep_logprob: r.keepLogprob, answer_logprob: r.answerLogprob,
         edit_preference: r.editPreference });
}

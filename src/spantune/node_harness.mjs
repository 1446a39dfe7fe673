// Decode span examples with Transformers.js, as the browser does, for `spantune demo` (spantune.pipeline).
// usage: node node_harness.mjs JS_DIR MODEL_DIR IN.jsonl OUT.jsonl DTYPE
//   JS_DIR: the repository's js/ package (its src/index.js and node_modules are used);
//   IN.jsonl: span examples; OUT.jsonl: one line per example {raw, text, overrun, verbose, fallback, tokens, latency_ms}.
// Prints {"load_ms": ..., "n": ...} on stdout when done.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [jsDir, modelDir, input, output, dtype] = process.argv.slice(2);
if (!dtype) {
  console.error('usage: node node_harness.mjs JS_DIR MODEL_DIR IN.jsonl OUT.jsonl DTYPE');
  process.exit(2);
}
const { createSpanCorrector } = await import(pathToFileURL(path.join(jsDir, 'src', 'index.js')).href);
const examples = readFileSync(input, 'utf8')
  .split('\n')
  .filter((line) => line.trim())
  .map((line) => JSON.parse(line));

const t0 = performance.now();
const corrector = await createSpanCorrector({ modelPath: modelDir, dtype, device: 'cpu' });
const loadMs = performance.now() - t0;
const lines = [];
for (const example of examples) {
  const r = await corrector.correct(example);
  lines.push(JSON.stringify({ raw: r.raw, text: r.text, overrun: r.overrun, verbose: r.verbose,
                              fallback: r.fallback, tokens: r.tokens, latency_ms: r.latencyMs }));
  process.stderr.write(`\rTransformers.js ${dtype}: ${lines.length}/${examples.length} spans`);
}
process.stderr.write('\n');
writeFileSync(output, lines.map((line) => line + '\n').join(''));
console.log(JSON.stringify({ load_ms: loadMs, n: lines.length }));

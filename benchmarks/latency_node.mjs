// Transformers.js side of benchmarks/latency.py: node latency_node.mjs EXPORT DTYPE DATA LIMIT THREADS TIE_GUARD
// Prints {"latency_s": [...], "new_tokens": [...], "texts": [...], "passes": [...], "replayed": [...]} for the
// first LIMIT spans of DATA
// (span JSONL), decoded with the corrector's defaults (prefix cache + copy drafts), keep margin 0 like the Python
// rows: an export's calibrated margin (config.json) would add its scoring passes to this row alone.
import { readFileSync } from 'node:fs';

import { createSpanCorrector } from '../js/src/corrector.js';

const [exportDir, dtype, data, limit, threads, tieGuard] = process.argv.slice(2);
const examples = readFileSync(data, 'utf8')
  .split('\n')
  .filter((line) => line.trim())
  .slice(0, Number(limit))
  .map((line) => JSON.parse(line));

const corrector = await createSpanCorrector({
  modelPath: exportDir,
  dtype,
  device: 'cpu',
  keepMargin: 0,
  tieGuard: Number(tieGuard),
  sessionOptions: { intraOpNumThreads: Number(threads) },
});
await corrector.correct(examples[0]); // warm-up, as on the Python side
const out = { latency_s: [], new_tokens: [], texts: [], passes: [], replayed: [] };
for (const example of examples) {
  const r = await corrector.correct(example);
  out.latency_s.push(r.latencyMs / 1000);
  out.new_tokens.push(r.tokens.length);
  out.texts.push(r.text);
  out.passes.push(r.passes);
  out.replayed.push(r.replayed);
}
process.stdout.write(JSON.stringify(out));

// End to end: the exported tiny model through Transformers.js must decode exactly as Python onnxruntime does.
// Artifacts come from `python -m spantune.export_fixture test/.artifacts` (npm's pretest step).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL, expectedRows } from '../scripts/test-artifacts.mjs';
import { createSpanCorrector } from '../src/corrector.js';
import { encodePrompt, renderPrompt } from '../src/encode.js';

const rows = expectedRows();

for (const dtype of ['q4', 'q8', 'fp32']) {
  test(`Transformers.js ${dtype} decodes like Python onnxruntime ${dtype}`, async (t) => {
    const corrector = await createSpanCorrector({ modelPath: MODEL, dtype, device: 'cpu' });
    for (const [n, row] of rows.entries()) {
      await t.test(`example ${n + 1}`, async () => {
        assert.equal(renderPrompt(corrector.tokenizer, row.example), row.prompt);
        assert.deepEqual(encodePrompt(corrector.tokenizer, row.example).prompt, row.prompt_ids);
        let streamed = '';
        const got = await corrector.correct(row.example, { onText: (text) => (streamed += text) });
        const want = row.outputs[dtype];
        assert.deepEqual(got.tokens, want.tokens);
        assert.equal(got.raw, want.raw);
        assert.deepEqual(
          { text: got.text, overrun: got.overrun, verbose: got.verbose, fallback: got.fallback },
          want.result,
        );
        assert.equal(streamed, got.raw);
      });
    }
  });
}

test('the artifacts are not degenerate (varied tokens, some runs shorter than the cap)', () => {
  const tokens = rows.flatMap((row) => row.outputs.q4.tokens);
  assert.ok(new Set(tokens).size > 20, `only ${new Set(tokens).size} distinct tokens`);
});

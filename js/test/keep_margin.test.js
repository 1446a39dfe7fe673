// The keep margin (docs/keep-margin.md) in Transformers.js: the same reply ids, log-probabilities and decisions
// as Python onnxruntime on the exported tiny model; margin 0 is the plain path, a huge margin keeps every span.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { MODEL, expectedRows } from '../scripts/test-artifacts.mjs';
import { createSpanCorrector } from '../src/corrector.js';
import { editPreference, keepReplyIds, keepsSpan, replyLogprob } from '../src/keep.js';

const venvPython = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const PYTHON = process.env.SPANTUNE_PYTHON || (existsSync(venvPython) ? venvPython : 'python3');

const examples = expectedRows().map((row) => row.example);

// Python onnxruntime fp32 with the margin scoring every edit: keep reply ids, both log-probabilities, the preference.
const PY = `
import json, sys
from spantune.infer.keep import KeepMargin, scored_sequences
from spantune.infer.onnx_backend import OnnxCorrector
from spantune.schema import SpanExample
c = OnnxCorrector(sys.argv[1], dtype="fp32", keep=KeepMargin(score=True))
for line in sys.stdin:
    ex = SpanExample.from_dict(json.loads(line), max_context=1 << 30)
    p = c.correct(ex)
    print(json.dumps({"keep_reply": scored_sequences(c.tokenizer, ex, []).keep_reply, "text": p.text,
                      "keep_logprob": p.keep_logprob, "answer_logprob": p.answer_logprob,
                      "edit_preference": p.edit_preference}))
`;

function pythonScores() {
  const run = spawnSync(PYTHON, ['-c', PY, MODEL], {
    input: examples.map((ex) => JSON.stringify(ex)).join('\n') + '\n',
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

test('replyLogprob: hand-computed', () => {
  // 3 positions, vocab 2; reply = ids[1..] = [1, 0]: log(e/(1+e)) + log(1/2)
  const logits = Float32Array.from([0, 1, 0, 0, 7, 7]);
  const want = Math.log(Math.E / (1 + Math.E)) + Math.log(0.5);
  assert.ok(Math.abs(replyLogprob(logits, 2, [0, 1, 0], 1) - want) < 1e-12);
  // 2 nats over replies of 3 and 5 tokens: 0.5 nats per token
  assert.equal(editPreference(-1, -3, 3, 5), 0.5);
  assert.equal(keepsSpan('the', 'teh', 0.5, 0), false);
  assert.equal(keepsSpan('the', 'teh', 0.5, 0.6), true);
  assert.equal(keepsSpan('the', 'teh', 0.5, 0.5), false);
  assert.equal(keepsSpan('teh', 'teh', -9, 5), false);
});


test('a bad keepMargin is one clear error', async () => {
  await assert.rejects(createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', keepMargin: -1 }), /keepMargin -1/);
});

test('keep margin: same reply ids, scores and decisions as Python; 0 = plain path; huge = keep', async () => {
  const py = pythonScores();
  const plain = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu' });
  const scoring = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', scoreKeep: true });
  const huge = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', keepMargin: 1e9 });
  const deltas = [];
  for (const [i, ex] of examples.entries()) {
    assert.deepEqual(keepReplyIds(plain.tokenizer, ex), py[i].keep_reply, `example ${i + 1}: keep reply ids`);
    const base = await plain.correct(ex);
    const got = await scoring.correct(ex);
    const { latencyMs: _a, ...baseRest } = base;
    const { latencyMs: _b, kept, keepLogprob, answerLogprob, editPreference: preference, ...gotRest } = got;
    assert.deepEqual(gotRest, baseRest, `example ${i + 1}: scoring at margin 0 changed the answer`);
    assert.equal(got.text, py[i].text);
    if (py[i].keep_logprob === null) {
      assert.equal(kept, undefined);
    } else {
      assert.equal(kept, false);
      assert.ok(Math.abs(keepLogprob - py[i].keep_logprob) < 1e-4, `${keepLogprob} vs ${py[i].keep_logprob}`);
      assert.ok(Math.abs(answerLogprob - py[i].answer_logprob) < 1e-4);
      assert.ok(Math.abs(preference - py[i].edit_preference) < 1e-4);
      deltas.push(py[i].edit_preference);
    }
    const kept1e9 = await huge.correct(ex);
    assert.equal(kept1e9.text, ex.span_in);
    assert.equal(kept1e9.kept, py[i].keep_logprob === null ? undefined : true);
  }
  assert.ok(deltas.length >= 4, `only ${deltas.length} edited spans`);
  // a margin between two of Python's preferences, far from both: JS keeps exactly the spans Python's rule keeps
  const sorted = [...deltas].sort((a, b) => a - b);
  let best = 0;
  for (let j = 1; j < sorted.length; j++) if (sorted[j] - sorted[j - 1] > sorted[best + 1] - sorted[best]) best = j - 1;
  const margin = (sorted[best] + sorted[best + 1]) / 2;
  assert.ok(margin > 0 && sorted[best + 1] - sorted[best] > 1e-3);
  const mid = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', keepMargin: margin });
  let nKept = 0;
  for (const [i, ex] of examples.entries()) {
    const got = await mid.correct(ex);
    const want = py[i].keep_logprob !== null &&
      keepsSpan(py[i].text, ex.span_in, py[i].edit_preference, margin);
    assert.equal(got.kept === true, want, `example ${i + 1}`);
    assert.equal(got.text, want ? ex.span_in : py[i].text);
    nKept += want;
  }
  assert.ok(nKept > 0 && nKept < deltas.length);
});

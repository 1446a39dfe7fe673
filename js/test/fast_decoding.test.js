// Prefix cache and copy-draft decoding in Transformers.js (docs/fast-decoding.md): the same tokens, text and stream
// as plain greedy decoding on the prompt cases and the golden set, the same prompt head ids as Python, and right
// or wrong drafts (the tiny random model never copies span_in by itself) giving greedy's tokens in fewer passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { Tensor } from '@huggingface/transformers';

import { MODEL, expectedRows } from '../scripts/test-artifacts.mjs';
import {
  TIE_GUARD, copyDraft, coversPrefix, createSpanCorrector, defaultDtype, dtypeTieGuard, lead, withQuantConfig,
} from '../src/corrector.js';
import { encodePrompt } from '../src/encode.js';

const GOLDEN = fileURLToPath(new URL('../../fixtures/span_eval.jsonl', import.meta.url));
const venvPython = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const PYTHON = process.env.SPANTUNE_PYTHON || (existsSync(venvPython) ? venvPython : 'python3');

const promptCases = expectedRows().map((row) => row.example);
// Golden spans clipped as Python clips them (SpanExample.from_dict(clip) → to_dict), so both sides see one input.
const CLIP = `
import json, sys
from spantune.infer.onnx_backend import prompt_head_ids
from spantune.schema import read_jsonl
from transformers import AutoTokenizer
print(json.dumps(prompt_head_ids(AutoTokenizer.from_pretrained(sys.argv[1]))))
for ex in read_jsonl(sys.argv[2], clip=True):
    print(json.dumps({k: getattr(ex, k) for k in ("ctx_before", "span_in", "ctx_after")}))
`;
const python = spawnSync(PYTHON, ['-c', CLIP, MODEL, GOLDEN], { encoding: 'utf8' });
assert.equal(python.status, 0, python.stderr);
const [pythonHead, ...golden] = python.stdout.trim().split('\n').map((line) => JSON.parse(line));
const examples = [...promptCases, ...golden];

test('copyDraft: start of the source, then the continuation after the longest matching tail', () => {
  const source = [10, 11, 12, 13, 11, 14, 2];
  assert.deepEqual(copyDraft(source, [], 3), [10, 11, 12]);
  assert.deepEqual(copyDraft(source, [10, 11], 2), [12, 13]);
  assert.deepEqual(copyDraft(source, [99, 13, 11], 8), [14, 2]);
  assert.deepEqual(copyDraft(source, [99, 11], 2), [12, 13]);
  assert.deepEqual(copyDraft(source, [99], 4), []);
  assert.deepEqual(copyDraft(source, [10], 0), []);
});

test('defaultDtype: q4 on WebGPU; elsewhere the fastest file for the device that matched PyTorch on every parity span, in a page no more than 30 % of fp32', () => {
  const parity = (q4, q8) => ({ fp32: { same_as_torch: 9, examples: 9 }, q4: { same_as_torch: q4, examples: 9 },
    q8: { same_as_torch: q8, examples: 9 } });
  const manifest = (q4, q8, dtypes = ['fp32', 'q4', 'q8']) => ({ dtypes, parity: { dtypes: parity(q4, q8) } });
  assert.equal(defaultDtype('webgpu', manifest(1, 1)), 'q4');
  assert.equal(defaultDtype('cpu', manifest(9, 9)), 'q4');
  assert.equal(defaultDtype('cpu', manifest(8, 9)), 'fp32');
  assert.equal(defaultDtype('wasm', manifest(9, 9)), 'q4'); // q4 folds to fp32 weights in WASM: fp32 speed
  assert.equal(defaultDtype('wasm', manifest(8, 9)), 'q8'); // fp32 is faithful too, but too big for a page
  const sized = { ...manifest(8, 9), size_ratio_vs_fp32: { fp32: 1, q4: 0.16, q8: 0.4 } };
  assert.equal(defaultDtype('wasm', sized), 'q4'); // q8 over 30 % of fp32: the most faithful of what fits
  assert.equal(defaultDtype('wasm', manifest(9, 9, ['fp32'])), 'fp32'); // nothing smaller exported
  assert.equal(defaultDtype('wasm', manifest(8, 9, ['q4', 'q8'])), 'q8');
  assert.equal(defaultDtype('wasm', manifest(2, 1, ['q4', 'q8'])), 'q4'); // none faithful: the most faithful
  assert.equal(defaultDtype('wasm', { dtypes: ['q8', 'q4'] }), 'q4'); // no parity records: the fastest file
  // int8 (per-token 8-bit activations) is the fastest file on CPU and WASM, q4 stays WebGPU's
  const withInt8 = (int8, q4) => ({ dtypes: ['fp32', 'q4', 'int8'], size_ratio_vs_fp32: { fp32: 1, q4: 0.16, int8: 0.26 },
    parity: { dtypes: { fp32: { same_as_torch: 9, examples: 9 }, q4: { same_as_torch: q4, examples: 9 },
      int8: { same_as_torch: int8, examples: 9 } } } });
  assert.equal(defaultDtype('wasm', withInt8(9, 9)), 'int8');
  assert.equal(defaultDtype('cpu', withInt8(9, 9)), 'int8');
  assert.equal(defaultDtype('webgpu', withInt8(9, 9)), 'q4');
  assert.equal(defaultDtype('wasm', withInt8(8, 7)), 'int8'); // neither faithful: the more faithful
  assert.equal(defaultDtype('wasm', withInt8(7, 9)), 'q4');
  assert.equal(defaultDtype('cpu', withInt8(8, 9)), 'q4');
});

test('withQuantConfig: WASM folds the 4-bit pairs into fp32 weights, native runtimes fuse them at the export\'s level', () => {
  assert.deepEqual(withQuantConfig(undefined, 'wasm', 1), { extra: { session: { disable_quant_qdq: '1' } } });
  assert.deepEqual(withQuantConfig(undefined, 'cpu', 4), { extra: { session: { qdq_matmulnbits_accuracy_level: '4' } } });
  assert.deepEqual(withQuantConfig(undefined, 'webgpu'), { extra: { session: { qdq_matmulnbits_accuracy_level: '1' } } });
  const mine = { graphOptimizationLevel: 'all', extra: { session: { qdq_matmulnbits_accuracy_level: '0' }, x: 'y' } };
  assert.deepEqual(withQuantConfig(mine, 'cpu', 4),
    { graphOptimizationLevel: 'all', extra: { session: { qdq_matmulnbits_accuracy_level: '0' }, x: 'y' } });
});

test('the prompt head ids are Python\'s and a token prefix of every prompt', async () => {
  const corrector = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu' });
  assert.deepEqual(corrector.prefixIds, pythonHead);
  for (const ex of examples) assert.ok(coversPrefix(corrector.prefixIds, encodePrompt(corrector.tokenizer, ex).prompt));
  assert.equal(coversPrefix(corrector.prefixIds, corrector.prefixIds), false);
});

for (const dtype of ['fp32', 'q4', 'int8']) {
  test(`${dtype}: cached and drafted answers equal plain greedy (prompt cases + golden set)`, async () => {
    // tieGuard 0: the fast decode itself, never redone plain
    const fast = await createSpanCorrector({ modelPath: MODEL, dtype, device: 'cpu', tieGuard: 0 });
    const plain = await createSpanCorrector({ modelPath: MODEL, dtype, device: 'cpu', prefixCache: false, copyDraft: false });
    const raws = new Set();
    for (const [i, ex] of examples.entries()) {
      let streamed = '';
      const { latencyMs: _a, passes: fastPasses, ...got } = await fast.correct(ex, { onText: (t) => (streamed += t) });
      const { latencyMs: _b, passes: plainPasses, ...want } = await plain.correct(ex);
      assert.deepEqual(got, want, `example ${i + 1}`);
      assert.equal(streamed, got.raw);
      assert.ok(fastPasses <= plainPasses);
      raws.add(want.raw);
    }
    assert.ok(raws.size > examples.length / 2, 'degenerate model: answers alike');
  });
}

test('a drafted reply with a near-tie is redone one token a pass (Python: the same)', async () => {
  const always = await createSpanCorrector({ modelPath: MODEL, dtype: 'int8', device: 'cpu', tieGuard: Infinity });
  const plain = await createSpanCorrector({ modelPath: MODEL, dtype: 'int8', device: 'cpu', prefixCache: false,
    copyDraft: false });
  let redone = 0;
  for (const [i, ex] of promptCases.entries()) {
    const { latencyMs: _a, passes: gotPasses, replayed, ...got } = await always.correct(ex);
    const { latencyMs: _b, passes: _c, replayed: plainReplayed, ...want } = await plain.correct(ex);
    assert.deepEqual([got, plainReplayed], [want, false], `example ${i + 1}`);
    // redone: the drafted decode's passes, then one a token after the first (the prompt's row)
    if (replayed) assert.ok(gotPasses >= want.tokens.length, `example ${i + 1}: ${gotPasses} passes`);
    redone += replayed;
  }
  assert.ok(redone >= promptCases.length / 2, `redone ${redone} of ${promptCases.length}`);
});

test('TIE_GUARD: Python\'s numbers; 8-bit activations get int8\'s, float compute the float files\'', () => {
  const code = 'import json; from spantune.infer.onnx_backend import TIE_GUARD; print(json.dumps(TIE_GUARD))';
  const py = spawnSync(PYTHON, ['-c', code], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  assert.deepEqual(TIE_GUARD, JSON.parse(py.stdout));
  assert.deepEqual(['int8', 'q4', 'fp32'].map((d) => dtypeTieGuard(d)), [TIE_GUARD.int8, TIE_GUARD.float, TIE_GUARD.float]);
  assert.equal(dtypeTieGuard('q4', 4), TIE_GUARD.int8); // MatMulNBits at accuracy level 4: int8 activations
});

test('lead: how far the largest logit leads the runner-up', () => {
  assert.equal(lead(Float32Array.of(0.5, 2, -1, 1.25)), 0.75);
  assert.equal(lead(Float32Array.of(3, 3, 1)), 0);
});

test('right and wrong drafts give greedy\'s tokens in fewer passes', async () => {
  const fast = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', tieGuard: 0 });
  const plain = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', prefixCache: false, copyDraft: false });
  let fewer = 0;
  for (const ex of promptCases) {
    const ids = encodePrompt(fast.tokenizer, ex).prompt;
    const want = await plain.greedy(ids);
    const mid = want.tokens.length >> 1;
    const wrongMiddle = want.tokens.map((t, i) => (i === mid ? (t + 1) % 50 : t));
    for (const draftSource of [[...want.tokens, fast.stopIds[0]], wrongMiddle]) {
      const got = await fast.greedy(ids, { draftSource });
      assert.deepEqual(got.tokens, want.tokens);
      fewer += got.passes < want.passes;
    }
  }
  assert.ok(fewer >= promptCases.length, `fewer passes on only ${fewer} decodes`);
});

test('num_logits_to_keep: the export\'s graph takes it, and the decode asks for the rows it reads', async () => {
  const corrector = await createSpanCorrector({ modelPath: MODEL, dtype: 'fp32', device: 'cpu', prefixCache: false,
    copyDraft: false });
  assert.ok(corrector.model.sessions.model.inputNames.includes('num_logits_to_keep'));
  const ids = encodePrompt(corrector.tokenizer, promptCases[0]).prompt;
  const inputs = (rows) => ({
    input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]),
    attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    num_logits_to_keep: new Tensor('int64', BigInt64Array.of(BigInt(rows)), []),
  });
  const all = (await corrector.model(inputs(0))).logits;
  const last = (await corrector.model(inputs(3))).logits;
  assert.deepEqual([all.dims[1], last.dims[1]], [ids.length, 3]);
  const vocab = all.dims[2];
  const tail = all.data.subarray((ids.length - 3) * vocab);
  for (let i = 0; i < tail.length; i++) assert.ok(Math.abs(tail[i] - last.data[i]) < 1e-4, `logit ${i}`);
});

// Every case of fixtures/prompt_cases.jsonl (written from the Python contract) must reproduce exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { buildPrompt, clipAfter, clipBefore, selectSpan } from '../src/prompt.js';
import { postProcess } from '../src/postprocess.js';

const FIXTURE = fileURLToPath(new URL('../../fixtures/prompt_cases.jsonl', import.meta.url));
const cases = readFileSync(FIXTURE, 'utf8')
  .split('\n')
  .filter((line) => line.trim())
  .map((line) => JSON.parse(line));

const run = {
  prompt: (i) => buildPrompt(i),
  clip: (i) => ({ before: clipBefore(i.text, i.limit), after: clipAfter(i.text, i.limit) }),
  select: (i) => selectSpan(i.text, i.start, i.end),
  postprocess: (i) => postProcess(i.raw, i.span_in),
};

test('the fixture covers every kind', () => {
  assert.deepEqual(new Set(cases.map((c) => c.kind)), new Set(Object.keys(run)));
});

cases.forEach((c, n) => {
  test(`case ${n + 1} (${c.kind}${c.note ? `: ${c.note}` : ''})`, () => {
    assert.deepEqual(run[c.kind](c.input), c.expected);
  });
});

test('a blank selection is judged by the contract whitespace, as in Python', () => {
  assert.throws(() => selectSpan('a\ufeff\u3000b', 1, 3), /only whitespace/);
  assert.equal(selectSpan('a\x1cb', 1, 2).span_in, '\x1c');
});

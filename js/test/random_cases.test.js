// Seeded random inputs (odd whitespace, «», backslashes, combining marks, emoji, labels) answered by Python
// (test/.artifacts/random_cases.jsonl, written by the pretest step): JS must give the same answer every time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { buildPrompt, clipAfter, clipBefore, selectSpan } from '../src/prompt.js';
import { postProcess, settled } from '../src/postprocess.js';

const FILE = fileURLToPath(new URL('./.artifacts/random_cases.jsonl', import.meta.url));
const cases = readFileSync(FILE, 'utf8')
  .split('\n')
  .filter((line) => line.trim())
  .map((line) => JSON.parse(line));

function answer(c) {
  const i = c.input;
  switch (c.kind) {
    case 'clip':
      return { before: clipBefore(i.text, i.limit), after: clipAfter(i.text, i.limit) };
    case 'select':
      try {
        return selectSpan(i.text, i.start, i.end);
      } catch (err) {
        return { error: err.message };
      }
    case 'prompt':
      return buildPrompt(i);
    case 'settled':
      return settled(i.raw);
    default:
      return postProcess(i.raw, i.span_in);
  }
}

test(`JS answers ${cases.length} random cases exactly as Python`, () => {
  assert.ok(cases.length >= 1000);
  const wrong = cases.filter((c) => JSON.stringify(answer(c)) !== JSON.stringify(c.expected));
  assert.deepEqual(wrong.slice(0, 3).map((c) => ({ case: c, js: answer(c) })), []);
  assert.ok(cases.some((c) => c.kind === 'select' && c.expected.error), 'no select error case drawn');
});

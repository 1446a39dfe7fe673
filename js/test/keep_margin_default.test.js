// The calibrated keep margin as createSpanCorrector's default (docs/keep-margin.md): `spantune export` writes it
// into config.json as spantune.keep_margin (nats per token, keep_margin_unit); left out, keepMargin is that number
// (0 without it); given, it wins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { MODEL, expectedRows } from '../scripts/test-artifacts.mjs';
import { createSpanCorrector } from '../src/corrector.js';

const examples = expectedRows().map((row) => row.example);

/** The tiny export copied to a temp folder, its config.json given `spantune` as `spantune export` writes it. */
function calibratedCopy(spantune) {
  const folder = join(mkdtempSync(join(tmpdir(), 'spantune-keep-')), 'model');
  cpSync(MODEL, folder, { recursive: true });
  const config = JSON.parse(readFileSync(join(folder, 'config.json'), 'utf8'));
  writeFileSync(join(folder, 'config.json'), JSON.stringify({ ...config, spantune }));
  return folder;
}

test('keepMargin defaults to the export\'s calibrated margin; an explicit 0 turns it off', async (t) => {
  const folder = calibratedCopy({ keep_margin: 1e9, keep_margin_unit: 'nats/token' });
  t.after(() => rmSync(join(folder, '..'), { recursive: true, force: true }));
  const options = { dtype: 'fp32', device: 'cpu' };
  const uncalibrated = await createSpanCorrector({ modelPath: MODEL, ...options });
  const calibrated = await createSpanCorrector({ modelPath: folder, ...options });
  const off = await createSpanCorrector({ modelPath: folder, ...options, keepMargin: 0 });
  assert.equal(uncalibrated.keepMargin, 0);
  assert.equal(calibrated.keepMargin, 1e9);
  assert.equal(off.keepMargin, 0);
  let nKept = 0;
  for (const [i, ex] of examples.entries()) {
    const plain = await uncalibrated.correct(ex);
    const byDefault = await calibrated.correct(ex);
    const explicitOff = await off.correct(ex);
    assert.equal(byDefault.text, ex.span_in, `example ${i + 1}: the calibrated default keeps every span`);
    assert.equal(byDefault.kept, plain.text === ex.span_in ? undefined : true);
    assert.equal(explicitOff.text, plain.text, `example ${i + 1}: keepMargin 0 is the plain path`);
    assert.equal(explicitOff.kept, undefined);
    nKept += byDefault.kept === true;
  }
  assert.ok(nKept > 0, 'the tiny model must edit some span, or the default is not exercised');
});

test('a bad calibrated margin in config.json is one clear error naming the file', async (t) => {
  const folder = calibratedCopy({ keep_margin: -2, keep_margin_unit: 'nats/token' });
  t.after(() => rmSync(join(folder, '..'), { recursive: true, force: true }));
  await assert.rejects(createSpanCorrector({ modelPath: folder, dtype: 'fp32' }),
    /config\.json spantune\.keep_margin: keepMargin -2 is not a finite number/);
});

test('an export calibrated before the per-token margin (no unit) is refused, saying so', async (t) => {
  const folder = calibratedCopy({ keep_margin: 1.25 });
  t.after(() => rmSync(join(folder, '..'), { recursive: true, force: true }));
  await assert.rejects(createSpanCorrector({ modelPath: folder, dtype: 'fp32' }),
    /config\.json spantune\.keep_margin_unit: undefined, not 'nats\/token': a margin in whole-reply nats/);
});

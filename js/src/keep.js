// The keep margin (precision knob), the JS twin of spantune.infer.keep: the keep reply, reply log-probabilities,
// the per-token preference, the keep rule and the export's calibrated margin (docs/keep-margin.md).

import { encodePrompt, replyStopIds } from './encode.js';

/**
 * `span_in` as the reply, encoded exactly as training encodes a reply (Python: spantune.train.data.encode_example):
 * encodePrompt's reply, cut after its first end-of-turn/EOS id (or that id appended when the template has
 * none). docs/keep-margin.md.
 */
export function keepReplyIds(tokenizer, example) {
  const ids = encodePrompt(tokenizer, { ...example, span_out: example.span_in }, { withAnswer: true }).reply;
  const stops = replyStopIds(tokenizer);
  const end = ids.findIndex((id) => stops.includes(id));
  return end === -1 ? [...ids, stops[0]] : ids.slice(0, end + 1);
}

/**
 * Sum over the reply tokens ids[promptLength..] of their log-softmax under the previous position's logits
 * (`logits`: flat [length × vocab] floats), in doubles (Python: spantune.infer.keep.reply_logprob).
 */
export function replyLogprob(logits, vocab, ids, promptLength) {
  let total = 0;
  for (let pos = promptLength; pos < ids.length; pos++) {
    const row = logits.subarray((pos - 1) * vocab, pos * vocab);
    let top = -Infinity;
    for (const x of row) top = Math.max(top, x);
    let sum = 0;
    for (const x of row) sum += Math.exp(x - top);
    total += row[ids[pos]] - (top + Math.log(sum));
  }
  return total;
}

/** What a keep margin counts (Python: spantune.infer.keep.KEEP_MARGIN_UNIT). */
export const KEEP_MARGIN_UNIT = 'nats/token';

/**
 * How much the model prefers its answer to the unchanged span, in nats per reply token: the log-probability
 * difference of the two replies over their mean length, end-of-turn tokens counted (Python: edit_preference).
 */
export function editPreference(answerLogprob, keepLogprob, answerTokens, keepTokens) {
  return (answerLogprob - keepLogprob) / ((answerTokens + keepTokens) / 2);
}

/** The keep rule: margin on (> 0), the answer edits the span, preferred by less than `margin` nats per token. */
export function keepsSpan(answer, spanIn, preference, margin) {
  return margin > 0 && answer !== spanIn && preference < margin;
}

/** Check a keep margin: a finite number of nats per token >= 0; `where` names its source in the error. */
export function checkedMargin(margin, where) {
  if (!(Number.isFinite(margin) && margin >= 0)) {
    throw new Error(`${where}: keepMargin ${margin} is not a finite number of ${KEEP_MARGIN_UNIT} >= 0`);
  }
  return margin;
}

/**
 * The export's calibrated keep margin: config.json's `spantune.keep_margin` (written by `spantune export` from
 * the model's keep_margin.json; Transformers.js loads it with the model), else 0 (docs/keep-margin.md). An export
 * from before the per-token margin (no `keep_margin_unit`) counts whole-reply nats: refused, saying so.
 */
export function calibratedKeepMargin(config, modelPath = 'the model') {
  const margin = config?.spantune?.keep_margin;
  if (margin === undefined) return 0;
  const unit = config.spantune.keep_margin_unit;
  if (unit !== KEEP_MARGIN_UNIT) {
    throw new Error(`${modelPath}/config.json spantune.keep_margin_unit: ${JSON.stringify(unit)}, not ` +
      `'${KEEP_MARGIN_UNIT}': a margin in whole-reply nats from an older spantune; calibrate and export again`);
  }
  return checkedMargin(margin, `${modelPath}/config.json spantune.keep_margin`);
}


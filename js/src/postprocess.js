// Post-processing, mirrored byte for byte from src/spantune/postprocess.py (definitions live there):
// first non-blank line; echoed labels and wrapping quotes/«» removed unless the span has them;
// a length cap of max(2 × len, len + 20) code points; on overrun or an empty answer, span_in unchanged;
// settled(raw): the early-stop test the decoders share.

import { LINE_BREAKS, WHITESPACE } from './prompt.js';

// /iu: Unicode simple case folding, as Python's re.IGNORECASE on str patterns.
const LABEL_RE =
  /^(?:corrected span|corrected text|corrected|correction|fixed span|fixed|span|answer|output|result)[ \t]*:[ \t]*/iu;
const QUOTE_PAIRS = [
  ['"', '"'],
  ["'", "'"],
  ['“', '”'],
  ['‘', '’'],
  ['«', '»'],
  ['`', '`'],
  ['„', '“'],
];
const LINE_SPLIT = new RegExp(`[${Array.from(LINE_BREAKS).join('')}]`, 'u');

const cpLength = (text) => Array.from(text).length;

/** Longest candidate (in code points) accepted for `spanIn`. */
export function lengthCap(spanIn) {
  const n = cpLength(spanIn);
  return Math.max(2 * n, n + 20);
}

function stripWs(text) {
  const cps = Array.from(text);
  let start = 0;
  let end = cps.length;
  while (start < end && WHITESPACE.has(cps[start])) start += 1;
  while (end > start && WHITESPACE.has(cps[end - 1])) end -= 1;
  return cps.slice(start, end).join('');
}

/** spanIn's leading and trailing whitespace. */
function edges(spanIn) {
  const core = stripWs(spanIn);
  if (!core) return [spanIn, ''];
  const start = spanIn.indexOf(core);
  return [spanIn.slice(0, start), spanIn.slice(start + core.length)];
}

/** First non-blank line, and whether any other line had content. */
function firstLine(raw) {
  const content = raw.split(LINE_SPLIT).map(stripWs).filter((line) => line);
  if (content.length === 0) return ['', false];
  return [content[0], content.length > 1];
}

/** Remove echoed labels and wrapping quotes that the span itself does not have. */
function unwrap(candidate, spanCore) {
  let stripped = false;
  for (;;) {
    const label = LABEL_RE.exec(candidate);
    if (label && !LABEL_RE.test(spanCore)) {
      candidate = stripWs(candidate.slice(label[0].length));
      stripped = true;
      continue;
    }
    const pair = QUOTE_PAIRS.find(([left, right]) => {
      const wrapped = cpLength(candidate) >= 2 && candidate.startsWith(left) && candidate.endsWith(right);
      const spanWrapped = cpLength(spanCore) >= 2 && spanCore.startsWith(left) && spanCore.endsWith(right);
      return wrapped && !spanWrapped;
    });
    if (!pair) return [candidate, stripped];
    candidate = stripWs(candidate.slice(pair[0].length, candidate.length - pair[1].length));
    stripped = true;
  }
}

/**
 * True once more output cannot change postProcess's result for any span: a second line with content
 * has begun (U+FFFD from a partly decoded character does not count as content). Decoders stop there.
 */
export function settled(raw) {
  return raw.split(LINE_SPLIT).filter((line) => stripWs(line).replaceAll('\ufffd', '')).length >= 2;
}

/**
 * Clean raw model output into the span to insert.
 * @returns {{text: string, overrun: boolean, verbose: boolean, fallback: boolean}}
 */
export function postProcess(raw, spanIn, cap = null) {
  const [first, extraLines] = firstLine(raw);
  const [lead, trail] = edges(spanIn);
  const [candidate, unwrapped] = unwrap(first, stripWs(spanIn));
  const verbose = extraLines || unwrapped;
  const limit = cap ?? lengthCap(spanIn);
  if (cpLength(candidate) > limit) return { text: spanIn, overrun: true, verbose, fallback: true };
  if (!candidate) return { text: spanIn, overrun: false, verbose, fallback: true };
  return { text: lead + candidate + trail, overrun: false, verbose, fallback: false };
}

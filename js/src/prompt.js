// The prompt contract, mirrored byte for byte from src/spantune/prompt.py (the single source of truth).
// fixtures/prompt_cases.jsonl proves the two agree; change Python first, regenerate the fixture, then this.
//
// Lengths and offsets are Unicode code points, as in Python (a string is handled as Array.from(text)).

export const SYSTEM_PROMPT = 'Correct ONLY the Span. Return just the corrected Span.';
export const MAX_CONTEXT = 60;

/** Whitespace as the contract defines it (an explicit set, the same in Python). */
export const WHITESPACE = new Set(
  ' \t\n\r\f\v\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007' +
    '\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff',
);
export const LINE_BREAKS = new Set('\n\r\u2028\u2029');
const ESCAPES = { '\\': '\\\\', '«': '\\«', '»': '\\»', '\n': '\\n', '\r': '\\r' };
const MARK = /^\p{M}$/u;
export const isSpace = (ch) => WHITESPACE.has(ch);

/** Code points that belong to the grapheme before them (combining marks, selectors, modifiers, ZWJ). */
function joinsPrevious(ch) {
  const cp = ch.codePointAt(0);
  return (
    MARK.test(ch) ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    (cp >= 0x1f3fb && cp <= 0x1f3ff) ||
    (cp >= 0xe0020 && cp <= 0xe007f) ||
    cp === 0x200d
  );
}

/** A cut before cps[i] splits no grapheme. */
function safeCut(cps, i) {
  if (i <= 0 || i >= cps.length) return true;
  return !joinsPrevious(cps[i]) && cps[i - 1] !== '\u200d';
}

function wordCut(cps, i) {
  return i <= 0 || i >= cps.length || isSpace(cps[i]) || isSpace(cps[i - 1]);
}

function findFirst(from, to, step, pred) {
  for (let i = from; step > 0 ? i < to : i > to; i += step) if (pred(i)) return i;
  return null;
}

/** Keep the end of `text`: at most `limit` code points, starting at a word boundary. */
export function clipBefore(text, limit = MAX_CONTEXT) {
  const cps = Array.from(text);
  if (cps.length <= limit) return text;
  const lo = cps.length - limit;
  let start = findFirst(lo, cps.length, 1, (s) => wordCut(cps, s));
  if (start === null) start = findFirst(lo, cps.length, 1, (s) => safeCut(cps, s)) ?? cps.length;
  return cps.slice(start).join('');
}

/** Keep the start of `text`: at most `limit` code points, ending at a word boundary. */
export function clipAfter(text, limit = MAX_CONTEXT) {
  const cps = Array.from(text);
  if (cps.length <= limit) return text;
  let end = findFirst(limit, 0, -1, (e) => wordCut(cps, e));
  if (end === null) end = findFirst(limit, 0, -1, (e) => safeCut(cps, e)) ?? 0;
  return cps.slice(0, end).join('');
}

/** The span an editor corrects when the caret sits at `caret` with nothing selected (see prompt.py). */
function caretWord(cps, caret) {
  const wordAt = (i) => {
    let start = i;
    while (start > 0 && !isSpace(cps[start - 1])) start -= 1;
    let end = i;
    while (end < cps.length && !isSpace(cps[end])) end += 1;
    return [start, end];
  };
  if (caret > 0 && !isSpace(cps[caret - 1])) return wordAt(caret - 1);
  if (caret < cps.length && !isSpace(cps[caret])) return wordAt(caret);
  let i = caret;
  while (i > 0 && isSpace(cps[i - 1]) && !LINE_BREAKS.has(cps[i - 1])) i -= 1;
  if (i > 0 && !isSpace(cps[i - 1])) return wordAt(i - 1);
  let j = caret;
  while (j < cps.length && isSpace(cps[j]) && !LINE_BREAKS.has(cps[j])) j += 1;
  if (j < cps.length && !isSpace(cps[j])) return wordAt(j);
  throw new Error(`no word at or next to the caret (position ${caret})`);
}

/**
 * Cut `text` into { ctx_before, span_in, ctx_after } the way the editor does.
 * `start`/`end` are code-point offsets; `end` null/undefined or equal to `start` means a caret.
 */
export function selectSpan(text, start, end = null, maxContext = MAX_CONTEXT) {
  const cps = Array.from(text);
  if (end === null || end === undefined) end = start;
  if (!(start >= 0 && start <= end && end <= cps.length)) {
    throw new Error(`selection ${start}..${end} is outside the text (length ${cps.length})`);
  }
  if (start === end) [start, end] = caretWord(cps, start);
  const span = cps.slice(start, end);
  if (span.some((ch) => LINE_BREAKS.has(ch))) {
    throw new Error('the selected span crosses a line break; select within one line');
  }
  if (span.every(isSpace)) {
    throw new Error('the selected span is empty or only whitespace');
  }
  return {
    ctx_before: clipBefore(cps.slice(0, start).join(''), maxContext),
    span_in: span.join(''),
    ctx_after: clipAfter(cps.slice(end).join(''), maxContext),
  };
}

/** Escape the characters that delimit prompt fields: \ « » newline carriage-return. */
export function escapeField(text) {
  return Array.from(text, (ch) => ESCAPES[ch] ?? ch).join('');
}

/** The user turn: the three escaped fields, one per line. */
export function userMessage(ctxBefore, spanIn, ctxAfter) {
  return (
    `Context before: «${escapeField(ctxBefore)}»\n` +
    `Span: «${escapeField(spanIn)}»\n` +
    `Context after: «${escapeField(ctxAfter)}»`
  );
}

/** { system, user } for a span example ({ ctx_before, span_in, ctx_after }). */
export function buildPrompt(example) {
  return { system: SYSTEM_PROMPT, user: userMessage(example.ctx_before, example.span_in, example.ctx_after) };
}

/** Chat messages for the tokenizer's chat template (system + user), as Python's build_messages. */
export function buildMessages(example) {
  const { system, user } = buildPrompt(example);
  return [
    { role: 'system', content: system },
    { role: 'user', content: user },
  ];
}

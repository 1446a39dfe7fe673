// The prompt as token ids, and where a reply ends: the JS twin of spantune.prompt.encode_prompt and
// spantune.infer.decode.stop_token_ids (user text never becomes a special token).

import { buildMessages } from './prompt.js';

/** The rendered prompt string, through the tokenizer's own chat template (Python: spantune.prompt.render). */
export function renderPrompt(tokenizer, example) {
  return tokenizer.apply_chat_template(buildMessages(example), { tokenize: false, add_generation_prompt: true });
}

/** Message i's content while the template renders: private-use code points, no marker text. */
const standIn = (i) => `\ue000${i}\ue001`;
const STAND_IN = /\ue000(\d+)\ue001/g;
const fill = (text, contents) => text.replace(STAND_IN, (_, i) => contents[Number(i)]);
const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A copy of `tokenizer`'s own tokenizer without its special tokens: it encodes special-token text as plain
 * text, as Python's `split_special_tokens=True` does (Transformers.js has no such option). Cached per tokenizer.
 */
const plainTokenizers = new WeakMap();
function plainTokenizer(tokenizer) {
  if (!plainTokenizers.has(tokenizer)) {
    const json = tokenizer._tokenizerJSON;
    const added_tokens = json.added_tokens.filter((token) => !token.special);
    const Tokenizer = tokenizer._tokenizer.constructor;
    plainTokenizers.set(tokenizer, new Tokenizer({ ...json, added_tokens }, tokenizer._tokenizerConfig));
  }
  return plainTokenizers.get(tokenizer);
}

/**
 * Ids of `rendered` (contents replaced by stand-ins): each special token in it is the template's marker; the
 * text between markers, contents filled in, is encoded with special-token text as plain text.
 */
function encodeTemplate(tokenizer, rendered, contents) {
  const markers = [...tokenizer.all_special_tokens].sort((a, b) => b.length - a.length);
  if (markers.length === 0) {
    throw new Error('the tokenizer has no special tokens, so its chat template cannot mark turns');
  }
  const plain = plainTokenizer(tokenizer);
  const pieces = rendered.split(new RegExp(`(${markers.map(escapeRegExp).join('|')})`));
  return pieces.flatMap((piece, i) =>
    i % 2
      ? [tokenizer.convert_tokens_to_ids(piece)]
      : plain.encode(fill(piece, contents), { add_special_tokens: false }).ids,
  );
}

/**
 * The one prompt encoder (Python: spantune.prompt.encode_prompt, same ids): the template is rendered with
 * stand-ins for the message contents, so only its own markers become special tokens, and each content is
 * spliced in as plain text; a span such as `</s><|im_start|>system` cannot open a turn. `withAnswer` adds the
 * reply: `span_out` and what the template writes after it, encoded apart from the prompt.
 * @returns {{prompt: number[], reply: number[]}}
 */
export function encodePrompt(tokenizer, example, { withAnswer = false } = {}) {
  const answer = withAnswer ? [{ role: 'assistant', content: example.span_out }] : [];
  const messages = [...buildMessages(example), ...answer];
  const contents = messages.map((m) => m.content);
  const standIns = messages.map((m, i) => ({ ...m, content: standIn(i) }));
  const render = (msgs, generation) =>
    tokenizer.apply_chat_template(msgs, { tokenize: false, add_generation_prompt: generation });
  const prompt = render(standIns.slice(0, 2), true);
  const full = withAnswer ? render(standIns, false) : prompt;
  if (!full.startsWith(prompt)) {
    throw new Error('the chat template renders the answered conversation with a different prefix than the ' +
      'generation prompt, so the reply cannot be aligned with inference');
  }
  if (fill(full, contents) !== render(messages, !withAnswer)) {
    throw new Error('the chat template changes message contents (trims or rewrites them), so user text cannot ' +
      'be kept apart from its markers');
  }
  return {
    prompt: encodeTemplate(tokenizer, prompt, contents),
    reply: encodeTemplate(tokenizer, full.slice(prompt.length), contents),
  };
}

/** End-of-turn tokens whose ids end a reply (Python: spantune.infer.torch_backend.END_OF_TURN_TOKENS). */
const END_OF_TURN_TOKENS = ['<|im_end|>', '<|eot_id|>', '<end_of_turn>', '<|end|>'];

/** EOS, then the end-of-turn ids the vocabulary has: the ids training cuts a reply at (Python: stop_token_ids). */
export function replyStopIds(tokenizer) {
  const ids = [];
  for (const id of [tokenizer.eos_token_id, ...tokenizer.convert_tokens_to_ids(END_OF_TURN_TOKENS)]) {
    if (id !== null && id !== undefined && !ids.includes(id)) ids.push(id);
  }
  return ids;
}

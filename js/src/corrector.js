// Span correction with an exported spantune folder through Transformers.js, offline.
// Same contract as Python's OnnxCorrector: chat-template prompt from prompt.js encoded by encodePrompt (user
// text never becomes a special token), greedy decoding
// (generation_config.json: do_sample false, max_new_tokens, every end id; stop early once settled), and
// post-processing from postprocess.js.
// Runs in Node (onnxruntime-node) and in browsers (the demo's worker loads this very file).

import { AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, Tensor, TextStreamer, env } from '@huggingface/transformers';

import { buildMessages } from './prompt.js';
import { postProcess, settled } from './postprocess.js';

/** Stop once the post-processed answer is settled (Python: TorchCorrector / OnnxCorrector do the same). */
class SettledCriteria extends StoppingCriteria {
  constructor(tokenizer, promptLength) {
    super();
    this.tokenizer = tokenizer;
    this.promptLength = promptLength;
  }

  _call(inputIds) {
    return inputIds.map((ids) =>
      settled(this.tokenizer.decode(ids.slice(this.promptLength).map(Number), { skip_special_tokens: true })),
    );
  }
}

/**
 * Point Transformers.js at a local export folder with remote loading off. `modelPath` is a filesystem
 * path in Node or a same-origin URL path in a browser; its parent becomes env.localModelPath.
 * Returns the model id to pass to from_pretrained (the folder's name).
 */
export function useLocalFolder(modelPath) {
  const trimmed = modelPath.replace(/[\\/]+$/, '');
  const cut = Math.max(trimmed.lastIndexOf('/'), trimmed.lastIndexOf('\\'));
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = cut === -1 ? './' : trimmed.slice(0, cut + 1);
  return trimmed.slice(cut + 1);
}

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

/**
 * `span_in` as the reply, encoded exactly as training encodes a reply (Python: train_data.encode_example):
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

/** The keep rule: margin on (> 0), the answer edits the span, preferred by less than `margin` nats. */
export function keepsSpan(answer, spanIn, answerLogprob, keepLogprob, margin) {
  return margin > 0 && answer !== spanIn && answerLogprob - keepLogprob < margin;
}

/** Check a keep margin: a finite number of nats >= 0; `where` names its source in the error. */
function checkedMargin(margin, where) {
  if (!(Number.isFinite(margin) && margin >= 0)) {
    throw new Error(`${where}: keepMargin ${margin} is not a finite number of nats >= 0`);
  }
  return margin;
}

/**
 * The export's calibrated keep margin: config.json's `spantune.keep_margin` (written by `spantune export` from
 * the model's keep_margin.json; Transformers.js loads it with the model), else 0 (docs/keep-margin.md).
 */
export function calibratedKeepMargin(config, modelPath = 'the model') {
  const margin = config?.spantune?.keep_margin;
  return margin === undefined ? 0 : checkedMargin(margin, `${modelPath}/config.json spantune.keep_margin`);
}

/** Model inputs for one sequence of token ids: `input_ids` and an all-ones `attention_mask`, batch 1. */
function idsInputs(ids) {
  const dims = [1, ids.length];
  return {
    input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), dims),
    attention_mask: new Tensor('int64', new BigInt64Array(ids.length).fill(1n), dims),
  };
}

/**
 * Load an exported folder and return a corrector.
 * @param {{modelPath: string, dtype?: string, device?: string, maxNewTokens?: number, sessionOptions?: object,
 *          progressCallback?: Function, keepMargin?: number, scoreKeep?: boolean}} options
 *   `progressCallback` receives Transformers.js loading progress. `keepMargin` (nats; 0 = off) keeps `span_in`
 *   unless the model prefers its edit by that much; left out, it is the export's calibrated margin
 *   (calibratedKeepMargin), else 0. `scoreKeep` scores edits even at margin 0 (docs/keep-margin.md).
 * @returns {Promise<{correct: Function, tokenizer: any, model: any, stopIds: number[], keepMargin: number}>}
 *   `correct(example, { onText })` takes { ctx_before, span_in, ctx_after } and resolves to
 *   { text, raw, overrun, verbose, fallback, tokens, latencyMs }, plus { kept, keepLogprob, answerLogprob } when
 *   the keep margin scored the answer; `onText` receives decoded text as it streams.
 */
export async function createSpanCorrector({
  modelPath,
  dtype = 'q4',
  device = 'cpu',
  maxNewTokens,
  sessionOptions,
  progressCallback,
  keepMargin: explicitMargin,
  scoreKeep = false,
} = {}) {
  if (!modelPath) throw new Error('createSpanCorrector: modelPath (an exported spantune folder) is required');
  if (explicitMargin !== undefined) checkedMargin(explicitMargin, 'createSpanCorrector');
  const id = useLocalFolder(modelPath);
  const progress = progressCallback ? { progress_callback: progressCallback } : {};
  const tokenizer = await AutoTokenizer.from_pretrained(id, progress);
  const model = await AutoModelForCausalLM.from_pretrained(id, {
    dtype,
    device,
    ...progress,
    ...(sessionOptions ? { session_options: sessionOptions } : {}),
  });
  const keepMargin = explicitMargin ?? calibratedKeepMargin(model.config, modelPath);
  const eos = model.generation_config?.eos_token_id ?? tokenizer.eos_token_id;
  const stopIds = (Array.isArray(eos) ? eos : [eos]).filter((i) => i !== null && i !== undefined);

  async function correct(example, { onText } = {}) {
    const t0 = performance.now();
    const promptIds = encodePrompt(tokenizer, example).prompt;
    const streamer = onText
      ? new TextStreamer(tokenizer, { skip_prompt: true, skip_special_tokens: true, callback_function: onText })
      : undefined;
    const promptLength = promptIds.length;
    const output = await model.generate({
      ...idsInputs(promptIds),
      do_sample: false,
      ...(maxNewTokens ? { max_new_tokens: maxNewTokens } : {}),
      stopping_criteria: [new SettledCriteria(tokenizer, promptLength)],
      streamer,
    });
    const generated = Array.from(output.slice(0, [promptLength, null]).data, Number);
    const end = generated.findIndex((tok) => stopIds.includes(tok));
    const tokens = end === -1 ? generated : generated.slice(0, end);
    const raw = tokenizer.decode(tokens, { skip_special_tokens: true });
    const answer = { ...postProcess(raw, example.span_in), raw, tokens };
    const scored = (keepMargin > 0 || scoreKeep) && answer.text !== example.span_in;
    const result = scored ? await withKeepMargin(answer, example, promptIds) : answer;
    return { ...result, latencyMs: performance.now() - t0 };
  }

  /** Logits of one forward pass over `ids` from an empty cache: flat [length × vocab] floats, and vocab. */
  async function forward(ids) {
    const { logits } = await model(idsInputs(ids));
    return { data: logits.data, vocab: logits.dims[2] };
  }

  /** The answer scored against keeping the span, and replaced by span_in when keepsSpan says so. */
  async function withKeepMargin(answer, example, promptIds) {
    const keepReply = keepReplyIds(tokenizer, example);
    const logprob = async (reply) => {
      const ids = [...promptIds, ...reply];
      const { data, vocab } = await forward(ids);
      return replyLogprob(data, vocab, ids, promptIds.length);
    };
    const keepLogprob = await logprob(keepReply);
    const answerLogprob = await logprob([...answer.tokens, keepReply.at(-1)]);
    const kept = keepsSpan(answer.text, example.span_in, answerLogprob, keepLogprob, keepMargin);
    return { ...answer, ...(kept ? { text: example.span_in } : {}), kept, keepLogprob, answerLogprob };
  }

  return { correct, tokenizer, model, stopIds, keepMargin };
}

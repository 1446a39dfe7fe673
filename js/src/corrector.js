// Span correction with an exported spantune folder through Transformers.js, offline.
// Same contract as Python's OnnxCorrector: chat-template prompt from prompt.js encoded by encodePrompt (user
// text never becomes a special token), greedy decoding
// (generation_config.json: max_new_tokens, every end id; stop early once settled), and
// post-processing from postprocess.js. Decoding is Python's too: the prompt head's KV cache computed once per
// loaded model, and copy drafts from span_in checked in one pass (same tokens as plain greedy;
// docs/fast-decoding.md).
// Runs in Node (onnxruntime-node) and in browsers (the demo's worker loads this very file).

import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';

import { encodePrompt } from './encode.js';
import { calibratedKeepMargin, checkedMargin, editPreference, keepReplyIds, keepsSpan, replyLogprob } from './keep.js';
import { postProcess, settled } from './postprocess.js';

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

/**
 * ctx_before of the probe prompts whose common token prefix is the prompt head: first characters of every class
 * a tokenizer may merge with the text before it (Python: spantune.infer.onnx_backend.HEAD_PROBES).
 */
const HEAD_PROBES = ['', 'a', 'A', ' a', '  ', '1', '.', '«', '»', '\\', '\n', '\t', "'", 'é', '日本', '😀', '\u00a0', '\u0301'];

/**
 * The longest token prefix shared by the probe prompts: chat template head, system prompt and the user turn's
 * opening up to where user text starts (Python: prompt_head_ids). Every prompt is still checked (coversPrefix).
 */
export function promptHeadIds(tokenizer) {
  const prompts = HEAD_PROBES.map((c) => encodePrompt(tokenizer, { ctx_before: c, span_in: 'x', ctx_after: '' }).prompt);
  return prompts.reduce((head, ids) => {
    let n = 0;
    while (n < head.length && n < ids.length && head[n] === ids[n]) n++;
    return head.slice(0, n);
  });
}

/** True when `head` is a true token prefix of `ids` with tokens after it (BPE can merge user text into the head). */
export function coversPrefix(head, ids) {
  return ids.length > head.length && head.every((id, i) => ids[i] === id);
}

/**
 * Up to `limit` guessed next tokens copied from `source` (span_in as the reply): its start while nothing is
 * generated, else what follows the first place where the last n generated tokens occur in it (longest n first).
 * Guesses only save passes, never change tokens (Python: copy_draft).
 */
export function copyDraft(source, generated, limit, maxNgram = 3) {
  if (limit <= 0) return [];
  if (generated.length === 0) return source.slice(0, limit);
  for (let n = Math.min(maxNgram, generated.length); n > 0; n--) {
    const tail = generated.slice(-n);
    for (let start = 0; start + n <= source.length; start++) {
      if (tail.every((id, i) => source[start + i] === id)) return source.slice(start + n, start + n + limit);
    }
  }
  return [];
}

/** Model inputs for `ids` after `pastLength` cached tokens (batch 1): ids, all-ones mask, positions. */
function stepInputs(ids, pastLength, rows = 0) {
  const dims = [1, ids.length];
  return {
    // logits for the last `rows` positions only (0: all); Transformers.js passes it on only to graphs that have it
    num_logits_to_keep: new Tensor('int64', BigInt64Array.of(BigInt(rows)), []),
    input_ids: new Tensor('int64', BigInt64Array.from(ids, BigInt), dims),
    attention_mask: new Tensor('int64', new BigInt64Array(pastLength + ids.length).fill(1n), [1, pastLength + ids.length]),
    position_ids: new Tensor('int64', BigInt64Array.from(ids, (_, i) => BigInt(pastLength + i)), dims),
  };
}

/** Argmax of one logits row (the first maximum, as numpy's argmax). */
function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * How far the argmax of one logits row leads the runner-up (Python: spantune.infer.decode.lead): below the gap
 * between two ways of computing the same logits, the two may choose differently.
 */
export function lead(row) {
  let best = -Infinity;
  let second = -Infinity;
  for (const x of row) {
    if (x > best) [best, second] = [x, best];
    else if (x > second) second = x;
  }
  return best - second;
}

/**
 * Leads (nats) below which a drafted reply is redone one token a pass, per dtype: a pass over several tokens rounds
 * differently (Python: spantune.infer.onnx_backend.TIE_GUARD, the same numbers; docs/fast-decoding.md).
 */
export const TIE_GUARD = { int8: 0.5, float: 1e-3 };

/**
 * The TIE_GUARD of an exported file as a runtime runs it: int8's where activations are quantized to 8 bits (the int8
 * file, or 4-bit MatMulNBits at accuracy level 4), else the float files' (Python: dtype_tie_guard).
 */
export function dtypeTieGuard(dtype, accuracyLevel = 1) {
  return dtype === 'int8' || accuracyLevel === 4 ? TIE_GUARD.int8 : TIE_GUARD.float;
}

/**
 * Streams decoded text as tokens arrive: emits what extends the text already emitted, holding back while the last
 * character is an incomplete UTF-8 sequence; `end` emits the rest.
 */
function textStream(tokenizer, onText) {
  let emitted = '';
  const emit = (tokens, final) => {
    const text = tokenizer.decode(tokens, { skip_special_tokens: true });
    if (text.startsWith(emitted) && text.length > emitted.length && (final || !text.endsWith('\ufffd'))) {
      onText(text.slice(emitted.length));
      emitted = text;
    }
  };
  return { put: (tokens) => emit(tokens, false), end: (tokens) => emit(tokens, true) };
}

/**
 * Exported files per device, fastest first, by time per span (benchmarks/RESULTS.md, runs 13 and 15): int8 (8-bit
 * weights, each token's activations quantized on their own: MatMulInteger, VNNI natively and 128-bit SIMD in WASM)
 * leads on both; then 4-bit MatMulNBits natively, and in WASM the 4-bit file folded into fp32 weights at load
 * (withQuantConfig), as fast as fp32 from a 6x smaller download; onnxruntime-web runs 8-bit MatMulNBits slowest.
 */
export const SPEED_ORDER = { cpu: ['int8', 'q4', 'fp32', 'q8'], wasm: ['int8', 'q4', 'fp32', 'q8'] };

/** The largest file a browser loads by default, as a share of fp32's size: a 650 MB download is no answer. */
export const MAX_BROWSER_SIZE_RATIO = 0.3;

/**
 * The file to load on `device` when none is asked for, from the export's manifest.json: WebGPU q4; CPU (Node) and
 * WASM the fastest file for that device (SPEED_ORDER) whose greedy answers equalled the evaluated PyTorch model's
 * on every parity span of the export (fp32 always does: the export refuses it otherwise), else the most faithful;
 * without parity records, the fastest file. In the browser (WASM) only files of at most MAX_BROWSER_SIZE_RATIO of
 * fp32's size are candidates (fp32 only when nothing smaller was exported).
 */
export function defaultDtype(device, manifest) {
  const exported = manifest?.dtypes ?? SPEED_ORDER.cpu;
  if (device === 'webgpu' && exported.includes('q4')) return 'q4';
  const ratio = (d) => manifest?.size_ratio_vs_fp32?.[d] ?? (d === 'fp32' ? 1 : 0);
  const fits = (d) => device === 'cpu' || ratio(d) <= MAX_BROWSER_SIZE_RATIO;
  const speed = (SPEED_ORDER[device] ?? SPEED_ORDER.wasm).filter((d) => exported.includes(d));
  const order = speed.some(fits) ? speed.filter(fits) : speed;
  const parity = manifest?.parity?.dtypes;
  if (!parity) return order[0];
  const agreement = (d) => (parity[d] ? parity[d].same_as_torch / parity[d].examples : 0);
  return order.find((d) => agreement(d) === 1) ?? order.reduce((best, d) => (agreement(d) > agreement(best) ? d : best));
}

/** The export's manifest.json (null if absent): a file in Node, a same-origin URL in a browser. */
async function readManifest(modelPath) {
  const path = `${modelPath.replace(/[\\/]+$/, '')}/manifest.json`;
  try {
    if (typeof process !== 'undefined' && process.versions?.node) {
      const { readFile } = await import('node:fs/promises');
      return JSON.parse(await readFile(path, 'utf8'));
    }
    const response = await fetch(path);
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}

/**
 * onnxruntime session settings for the 4-bit file, whose MatMul weights are int4 DequantizeLinear + MatMul pairs
 * (spantune.export.onnx): native onnxruntime (Node, WebGPU) fuses each pair into MatMulNBits at the export's
 * accuracy level (its manifest; 1 = fp32 compute, as the parity check ran it; onnxruntime's own default, 4,
 * quantizes activations to int8); onnxruntime-web's WASM build, whose MatMulNBits is 6-8x slower per pass than
 * its fp32 MatMul, folds each pair into an fp32 weight when the session loads: a 4-bit download at fp32 speed.
 * Python sets the same key (spantune.infer.onnx_backend.ACCURACY_LEVEL_KEY). Entries the caller set win.
 */
export function withQuantConfig(sessionOptions, device, accuracyLevel = 1) {
  const entries = device === 'wasm' ? { disable_quant_qdq: '1' } : { qdq_matmulnbits_accuracy_level: String(accuracyLevel) };
  const extra = sessionOptions?.extra ?? {};
  return { ...sessionOptions, extra: { ...extra, session: { ...entries, ...extra.session } } };
}

/**
 * Load an exported folder and return a corrector.
 * @param {{modelPath: string, dtype?: string, device?: string, maxNewTokens?: number, sessionOptions?: object,
 *          progressCallback?: Function, keepMargin?: number, scoreKeep?: boolean, prefixCache?: boolean,
 *          copyDraft?: boolean, tieGuard?: number}} options
 *   `dtype` left out is defaultDtype(device, the export's manifest). `progressCallback` receives Transformers.js
 *   loading progress. `keepMargin` (nats per reply token; 0 = off) keeps `span_in`
 *   unless the model prefers its edit by that much; left out, it is the export's calibrated margin
 *   (calibratedKeepMargin), else 0. `scoreKeep` scores edits even at margin 0 (docs/keep-margin.md).
 *   `prefixCache` and `copyDraft` (both on; same answers) are the speed-ups of docs/fast-decoding.md; copy drafts
 *   are skipped while the KV cache lives on the GPU (WebGPU), where it cannot be cut back after a wrong guess.
 *   A reply whose drafted decode took a token leading the runner-up by less than `tieGuard` nats (TIE_GUARD) is
 *   decoded again one token a pass (greedy); left out, `tieGuard` is dtypeTieGuard for the file as it runs.
 * @returns {Promise<{correct: Function, greedy: Function, tokenizer: any, model: any, stopIds: number[],
 *          keepMargin: number, dtype: string, prefixIds: number[]}>}
 *   `greedy(promptIds, { draftSource })` resolves to the greedy { tokens, passes, closest, replayed } (Python:
 *   spantune.infer.decode.greedy).
 *   `correct(example, { onText })` takes { ctx_before, span_in, ctx_after } and resolves to
 *   { text, raw, overrun, verbose, fallback, tokens, passes, replayed, latencyMs }, plus
 *   { kept, keepLogprob, answerLogprob, editPreference }
 *   when the keep margin scored the answer; `passes` counts forward passes of the decode (the prefix's one-off pass
 *   not included; a replayed reply's both decodes); `onText` receives decoded text as it streams.
 */
export async function createSpanCorrector({
  modelPath,
  dtype: askedDtype,
  device = 'cpu',
  maxNewTokens,
  sessionOptions,
  progressCallback,
  keepMargin: explicitMargin,
  scoreKeep = false,
  prefixCache = true,
  copyDraft: drafts = true,
  tieGuard: askedGuard,
} = {}) {
  if (!modelPath) throw new Error('createSpanCorrector: modelPath (an exported spantune folder) is required');
  if (explicitMargin !== undefined) checkedMargin(explicitMargin, 'createSpanCorrector');
  const manifest = await readManifest(modelPath);
  const dtype = askedDtype ?? defaultDtype(device, manifest);
  const level = manifest?.quantization?.[dtype]?.accuracy_level;
  // WASM folds the 4-bit pairs into fp32 weights (withQuantConfig): float compute whatever the export's level
  const tieGuard = askedGuard ?? dtypeTieGuard(dtype, device === 'wasm' ? 1 : level);
  const id = useLocalFolder(modelPath);
  const progress = progressCallback ? { progress_callback: progressCallback } : {};
  const tokenizer = await AutoTokenizer.from_pretrained(id, progress);
  const model = await AutoModelForCausalLM.from_pretrained(id, {
    dtype,
    device,
    ...progress,
    session_options: withQuantConfig(sessionOptions, device, level),
  });
  const keepMargin = explicitMargin ?? calibratedKeepMargin(model.config, modelPath);
  const eos = model.generation_config?.eos_token_id ?? tokenizer.eos_token_id;
  const stopIds = (Array.isArray(eos) ? eos : [eos]).filter((i) => i !== null && i !== undefined);
  const limit = maxNewTokens ?? model.generation_config?.max_new_tokens ?? 20;
  // a wrong guess needs the KV cache cut back: not possible while it lives in GPU buffers (WebGPU)
  const drafting = drafts && device !== 'webgpu';

  /**
   * One forward pass over `ids` after the `pastLength` tokens of `past` (null: none): float32 logits of the last
   * `rows` positions (flat [rows × vocab]; 0: all of `ids`), vocab, and the KV cache that now also holds `ids`.
   * Exports with `num_logits_to_keep` compute only those rows; older ones compute all and are cut here.
   */
  async function run(ids, pastLength, past, rows = 0) {
    const outputs = await model({ ...stepInputs(ids, pastLength, rows), past_key_values: past });
    const present = {};
    for (const [name, tensor] of Object.entries(outputs)) {
      if (name.startsWith('present')) present[name.replace('present', 'past_key_values')] = tensor;
    }
    const vocab = outputs.logits.dims[2];
    const data = outputs.logits.data;
    return { logits: rows ? data.subarray(data.length - rows * vocab) : data, vocab, present };
  }

  /** Free a KV cache's GPU buffers (WebGPU) unless they are the prefix cache's. */
  async function release(past) {
    const kept = new Set(Object.values(prefix?.past ?? {}));
    await Promise.all(Object.values(past ?? {}).filter((t) => t.location === 'gpu-buffer' && !kept.has(t))
      .map((t) => t.dispose()));
  }

  const prefixIds = prefixCache ? promptHeadIds(tokenizer) : [];
  const head = prefixCache ? await run(prefixIds, 0, null) : null;
  const prefix = head && { ids: prefixIds, logits: head.logits, past: head.present };

  /**
   * Greedy tokens after `promptIds` and the forward passes taken (Python: spantune.infer.decode.greedy): from the
   * prefix cache when it covers the prompt; each pass feeds the pending token and up to 8 copy-draft guesses from
   * `draftSource` (span_in as the reply), takes greedy's tokens until a guess differs from greedy's token (taken
   * too), then cuts the cache back to the inputs taken. Stops at an end id, once settled, or at the token limit;
   * `stream` gets the tokens as they come. Rows of a pass over several tokens round differently from one-token
   * passes, so when a token taken after a draft led the runner-up by less than `tieGuard` nats (`closest`), the
   * reply is decoded again one token a pass from the prompt's cache and logits row (`replayed`; the stream then
   * shows the first decode's text, the answer is the second's). With `keepCache` the decode's KV cache comes back
   * as `cache` (which holds at least the prompt) for scoreAfter, and the caller releases it.
   */
  async function greedy(promptIds, { draftSource = [], stream, keepCache = false } = {}) {
    const cached = prefix !== null && coversPrefix(prefix.ids, promptIds);
    let past = cached ? prefix.past : null;
    let length = cached ? prefix.ids.length : 0;
    let passes = 0;
    let firstRow = null; // the logits row after the prompt: drafts after the prompt leave it as the plain pass has it
    let handedOver = false;

    /** Cut the KV cache back to its first `length` inputs. */
    const crop = () => {
      if (length < Object.values(past)[0].dims.at(-2)) {
        past = Object.fromEntries(Object.entries(past).map(([name, t]) => [name, t.slice(null, null, [0, length], null)]));
      }
    };

    /** One decode after the cache: `pending` first (with copy drafts when `withDrafts`), or `first` (a logits row
     * from an earlier pass) in place of the first pass. Resolves to its tokens and the smallest lead after a draft. */
    async function decode(pending, withDrafts, first = null) {
      const tokens = [];
      let closest = Infinity;
      let drafted = false;
      while (tokens.length < limit) {
        let draft = withDrafts ? copyDraft(draftSource, tokens, Math.min(8, limit - tokens.length - 1)) : [];
        let logits = first;
        let vocab = first?.length;
        if (first) {
          draft = [];
          first = null;
        } else {
          const out = await run([...pending, ...draft], length, past, draft.length + 1);
          if (past !== prefix?.past) await release(past);
          ({ logits, vocab } = out);
          past = out.present;
          passes += 1;
        }
        const promptRows = firstRow === null ? 1 : 0;
        if (promptRows) firstRow = logits.slice(0, vocab);
        drafted ||= draft.length > 0;
        length += pending.length;
        for (let i = 0; i <= draft.length; i++) {
          const row = logits.subarray(i * vocab, (i + 1) * vocab);
          if (drafted && i >= promptRows) closest = Math.min(closest, lead(row));
          const token = argmax(row);
          if (stopIds.includes(token)) return { tokens, closest };
          tokens.push(token);
          stream?.put(tokens);
          if (settled(tokenizer.decode(tokens, { skip_special_tokens: true })) || tokens.length === limit) {
            return { tokens, closest };
          }
          if (token !== draft[i]) break;
          length += 1;
        }
        crop(); // wrong guesses: drop their keys and values
        pending = [tokens.at(-1)];
      }
      return { tokens, closest };
    }

    try {
      const drafted = await decode(promptIds.slice(length), drafting && draftSource.length > 0);
      const { closest } = drafted;
      let { tokens } = drafted;
      const replayed = closest < tieGuard;
      if (replayed) {
        length = promptIds.length;
        crop();
        ({ tokens } = await decode([], false, firstRow));
      }
      handedOver = keepCache;
      const result = { tokens, passes, closest, replayed };
      return keepCache ? { ...result, cache: past } : result;
    } finally {
      if (!handedOver && past !== prefix?.past) await release(past);
    }
  }

  async function correct(example, { onText } = {}) {
    const t0 = performance.now();
    const encoded = encodePrompt(tokenizer, { ...example, span_out: example.span_in }, { withAnswer: drafting });
    const promptIds = encoded.prompt;
    const stream = onText ? textStream(tokenizer, onText) : undefined;
    const scoring = keepMargin > 0 || scoreKeep;
    const { tokens, passes, replayed, cache } = await greedy(promptIds,
      { draftSource: encoded.reply, stream, keepCache: scoring });
    try {
      stream?.end(tokens);
      const raw = tokenizer.decode(tokens, { skip_special_tokens: true });
      const answer = { ...postProcess(raw, example.span_in), raw, tokens, passes, replayed };
      const scored = scoring && answer.text !== example.span_in;
      const result = scored ? await withKeepMargin(answer, example, promptIds, cache) : answer;
      return { ...result, latencyMs: performance.now() - t0 };
    } finally {
      await release(cache);
    }
  }

  /**
   * Logits of the last `rows` positions of `ids` (flat [rows × vocab] floats, each row predicting the token after
   * its position) and vocab: one pass from the prefix cache when it covers `ids`, else from an empty cache
   * (Python: OnnxDecoder.logits).
   */
  async function forward(ids, rows) {
    const cached = prefix !== null && coversPrefix(prefix.ids, ids);
    const rest = cached ? ids.slice(prefix.ids.length) : ids;
    const within = rows <= rest.length;
    const { logits, vocab, present } = await run(rest, cached ? prefix.ids.length : 0, cached ? prefix.past : null,
      within ? rows : 0);
    await release(present);
    if (within) return { data: logits, vocab };
    const data = new Float32Array(ids.length * vocab); // rows reach into the prefix: its logits first
    data.set(prefix.logits);
    data.set(logits, prefix.logits.length);
    return { data: data.subarray(data.length - rows * vocab), vocab };
  }
  /**
   * Logits of `ids` from position `start` (flat [(ids.length - start) × vocab] floats) and vocab, run on a decode's
   * KV cache `cache` cut back to `start` tokens of its prompt, so a scored reply costs its few tokens, not a whole
   * prompt (Python: spantune.infer.decode.scored_after); a whole pass (forward) when `ids` does not start with that
   * prompt, the cache does not hold it, or it lives on the GPU (WebGPU: it cannot be cut back).
   */
  async function scoreAfter(cache, promptIds, ids, start) {
    const held = cache ? Object.values(cache)[0] : null;
    if (!held || held.location === 'gpu-buffer' || start > Math.min(promptIds.length, held.dims.at(-2))
        || ids.slice(0, start).some((id, i) => id !== promptIds[i])) {
      return forward(ids, ids.length - start);
    }
    const past = Object.fromEntries(Object.entries(cache).map(([name, t]) => [name, t.slice(null, null, [0, start], null)]));
    const { logits, vocab, present } = await run(ids.slice(start), start, past, 0);
    await release(present);
    return { data: logits, vocab };
  }

  /** The answer scored against keeping the span (on the decode's `cache`), and replaced by span_in when keepsSpan
   * says so. */
  async function withKeepMargin(answer, example, promptIds, cache) {
    const keepReply = keepReplyIds(tokenizer, example);
    const start = promptIds.length - 1; // the rows that predict the reply, from the prompt's last token
    const logprob = async (reply) => {
      const ids = [...promptIds, ...reply];
      const { data, vocab } = await scoreAfter(cache, promptIds, ids, start);
      return replyLogprob(data, vocab, ids.slice(start), 1);
    };
    const answerReply = [...answer.tokens, keepReply.at(-1)];
    const keepLogprob = await logprob(keepReply);
    const answerLogprob = await logprob(answerReply);
    const preference = editPreference(answerLogprob, keepLogprob, answerReply.length, keepReply.length);
    const kept = keepsSpan(answer.text, example.span_in, preference, keepMargin);
    return { ...answer, ...(kept ? { text: example.span_in } : {}), kept, keepLogprob, answerLogprob,
      editPreference: preference };
  }

  return { correct, greedy, tokenizer, model, stopIds, keepMargin, dtype, prefixIds };
}

// Span correction with an exported spantune folder through Transformers.js, offline.
// Same contract as Python's OnnxCorrector: chat-template prompt from prompt.js, greedy decoding
// (generation_config.json: do_sample false, max_new_tokens, every end id; stop early once settled), and
// post-processing from postprocess.js.
// Runs in Node (onnxruntime-node) and in browsers (the demo's worker loads this very file).

import { AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, TextStreamer, env } from '@huggingface/transformers';

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

/**
 * Load an exported folder and return a corrector.
 * @param {{modelPath: string, dtype?: string, device?: string, maxNewTokens?: number, sessionOptions?: object,
 *          progressCallback?: Function}} options  `progressCallback` receives Transformers.js loading progress.
 * @returns {Promise<{correct: Function, tokenizer: any, model: any, stopIds: number[]}>}
 *   `correct(example, { onText })` takes { ctx_before, span_in, ctx_after } and resolves to
 *   { text, raw, overrun, verbose, fallback, tokens, latencyMs }; `onText` receives decoded text as it streams.
 */
export async function createSpanCorrector({
  modelPath,
  dtype = 'q4',
  device = 'cpu',
  maxNewTokens,
  sessionOptions,
  progressCallback,
} = {}) {
  if (!modelPath) throw new Error('createSpanCorrector: modelPath (an exported spantune folder) is required');
  const id = useLocalFolder(modelPath);
  const progress = progressCallback ? { progress_callback: progressCallback } : {};
  const tokenizer = await AutoTokenizer.from_pretrained(id, progress);
  const model = await AutoModelForCausalLM.from_pretrained(id, {
    dtype,
    device,
    ...progress,
    ...(sessionOptions ? { session_options: sessionOptions } : {}),
  });
  const eos = model.generation_config?.eos_token_id ?? tokenizer.eos_token_id;
  const stopIds = (Array.isArray(eos) ? eos : [eos]).filter((i) => i !== null && i !== undefined);

  async function correct(example, { onText } = {}) {
    const t0 = performance.now();
    const inputs = tokenizer(renderPrompt(tokenizer, example), { add_special_tokens: false });
    const streamer = onText
      ? new TextStreamer(tokenizer, { skip_prompt: true, skip_special_tokens: true, callback_function: onText })
      : undefined;
    const promptLength = inputs.input_ids.dims[1];
    const output = await model.generate({
      ...inputs,
      do_sample: false,
      ...(maxNewTokens ? { max_new_tokens: maxNewTokens } : {}),
      stopping_criteria: [new SettledCriteria(tokenizer, promptLength)],
      streamer,
    });
    const generated = Array.from(output.slice(0, [promptLength, null]).data, Number);
    const end = generated.findIndex((tok) => stopIds.includes(tok));
    const tokens = end === -1 ? generated : generated.slice(0, end);
    const raw = tokenizer.decode(tokens, { skip_special_tokens: true });
    return { ...postProcess(raw, example.span_in), raw, tokens, latencyMs: performance.now() - t0 };
  }

  return { correct, tokenizer, model, stopIds };
}

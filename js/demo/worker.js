// Model work, off the page's main thread. The corrector is js/src/corrector.js — the same code the
// Node harness runs — so the browser and Node answer the same span with the same prompt, greedy
// decoding and post-processing. Everything is fetched from this origin (the demo server).
import { env } from '/vendor/transformers/transformers.js';
import { createSpanCorrector } from '/lib/corrector.js';

let corrector = null;

/** `dtype` undefined: the corrector picks the device's default file (defaultDtype, from the export's manifest). */
async function load({ modelRoot, model, dtype, device, wasmPaths, threads }) {
  env.backends.onnx.wasm.wasmPaths = wasmPaths; // ONNX Runtime's wasm from this server, not a CDN
  if (threads) env.backends.onnx.wasm.numThreads = threads; // default: half the cores, at most 4
  const t0 = performance.now();
  corrector = await createSpanCorrector({
    modelPath: `${modelRoot}${model}`,
    dtype,
    device,
    progressCallback: (progress) => postMessage({ type: 'progress', progress }),
  });
  postMessage({ type: 'ready', device, dtype: corrector.dtype, loadMs: performance.now() - t0,
                threads: env.backends.onnx.wasm.numThreads });
}

async function correct({ id, example }) {
  const out = await corrector.correct(example, {
    onText: (text) => postMessage({ type: 'partial', id, text }),
  });
  const { text, overrun, verbose, fallback, raw, tokens, passes, latencyMs } = out;
  postMessage({ type: 'result', id, raw, latencyMs, newTokens: tokens.length, passes,
                result: { text, overrun, verbose, fallback } });
}

// Requests are handled one at a time, in order; the page ignores answers it no longer waits for.
let queue = Promise.resolve();
self.addEventListener('message', ({ data: msg }) => {
  const job = msg.type === 'load' ? load : msg.type === 'correct' ? correct : null;
  if (!job) return;
  queue = queue.then(() => job(msg)).catch((err) => {
    postMessage({ type: 'error', id: msg.id, during: msg.type, message: String(err?.message ?? err) });
  });
});

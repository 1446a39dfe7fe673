// The page: text, selection → span (the shared prompt contract), and the worker that runs the model.
// All model work happens in worker.js so that typing and scrolling never freeze.
import { selectSpan } from '/lib/prompt.js';

const $ = (id) => document.getElementById(id);
const ui = {
  text: $('text'), suggest: $('suggest'), auto: $('auto'), status: $('status'),
  loading: $('loading'), loadLabel: $('load-label'), progress: $('load-progress'), loadDetail: $('load-detail'),
  modelName: $('model-name'), backend: $('backend'),
  result: $('result'), ctxBefore: $('ctx-before'), spanIn: $('span-in'), ctxAfter: $('ctx-after'),
  suggestion: $('suggestion'), noChange: $('no-change'), accept: $('accept'), reject: $('reject'),
  latency: $('latency'), flags: $('flags'), raw: $('raw'),
};

const params = new URLSearchParams(location.search);
let worker = null;
let config = null;    // /demo-config.json: model name, dtypes, ONNX Runtime wasm files per device
let device = null;
let ready = false;
let nextId = 1;
let pending = null;   // the request whose answer the page is waiting for
let shown = null;     // the suggestion on screen: the request ({ text, range, spanIn, … }) plus its suggestion
const files = new Map(); // file → { loaded, total, done } while the model downloads

/** Code-point offset of a UTF-16 index (textarea selections count UTF-16 units; the contract counts code points). */
function toCodePoints(text, index) {
  return Array.from(text.slice(0, index)).length;
}

/**
 * Where the span that selectSpan chose sits in the text, as UTF-16 [start, end).
 * A selection is the span itself; for a caret, the span is the word that selectSpan picked, i.e. the
 * occurrence of spanIn whose surrounding text matches the (clipped) contexts, nearest the caret.
 */
function locateSpan(text, start, end, ctxBefore, spanIn, ctxAfter) {
  if (start !== end) return [start, end];
  let best = null;
  for (let i = text.indexOf(spanIn); i !== -1; i = text.indexOf(spanIn, i + 1)) {
    const j = i + spanIn.length;
    if (!text.slice(0, i).endsWith(ctxBefore) || !text.slice(j).startsWith(ctxAfter)) continue;
    const distance = start < i ? i - start : start > j ? start - j : 0;
    if (best === null || distance < best.distance) best = { start: i, end: j, distance };
  }
  return best ? [best.start, best.end] : null;
}

function setStatus(message, isError = false) {
  ui.status.textContent = message;
  ui.status.classList.toggle('error', isError);
}

function requestSuggestion() {
  if (!ready) return;
  const text = ui.text.value;
  const { selectionStart, selectionEnd } = ui.text;
  const key = `${selectionStart}:${selectionEnd}:${text}`;
  if (pending && pending.key === key) return;
  let example;
  try {
    example = selectSpan(text, toCodePoints(text, selectionStart), toCodePoints(text, selectionEnd));
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const { ctx_before: ctxBefore, span_in: spanIn, ctx_after: ctxAfter } = example;
  const range = locateSpan(text, selectionStart, selectionEnd, ctxBefore, spanIn, ctxAfter);
  pending = { id: nextId++, key, text, range, ctxBefore, spanIn, ctxAfter, streamed: '' };
  setStatus(`correcting “${spanIn}”…`);
  ui.suggest.disabled = true;
  worker.postMessage({ type: 'correct', id: pending.id, example });
}

function showResult(request, msg) {
  const changed = msg.result.text !== request.spanIn;
  // Unchanged text means "no change needed" only when the model said so; a fallback means its answer
  // was discarded (too long, or empty) and the span is kept as it was.
  const state = changed ? 'suggestion' : msg.result.fallback ? 'unusable' : 'no-change';
  shown = { ...request, suggestion: msg.result.text, changed };
  ui.ctxBefore.textContent = request.ctxBefore;
  ui.spanIn.textContent = request.spanIn;
  ui.ctxAfter.textContent = request.ctxAfter;
  ui.suggestion.textContent = changed ? msg.result.text : '';
  ui.suggestion.hidden = !changed;
  ui.noChange.hidden = changed;
  ui.noChange.textContent = state === 'no-change' ? 'no change'
    : `no usable suggestion (${msg.result.overrun ? 'the answer was too long' : 'the answer was empty'}); the span is kept`;
  ui.noChange.classList.toggle('unusable', state === 'unusable');
  ui.accept.hidden = !changed || request.range === null;
  ui.reject.textContent = changed ? 'Reject' : 'Dismiss';
  ui.latency.textContent = `${Math.round(msg.latencyMs)} ms · ${msg.passes} passes · ${msg.newTokens} tokens`;
  const flags = Object.entries(msg.result).filter(([k, v]) => k !== 'text' && v === true).map(([k]) => k);
  ui.flags.textContent = flags.length ? `(${flags.join(', ')})` : '';
  ui.raw.textContent = msg.raw;
  ui.result.hidden = false;
  ui.result.dataset.state = state;
  ui.result.dataset.latencyMs = String(msg.latencyMs);
  ui.result.dataset.tokens = String(msg.newTokens);
  ui.result.dataset.passes = String(msg.passes);
  document.body.dataset.lastId = String(msg.id);
}

function accept() {
  if (!shown) return;
  if (ui.text.value !== shown.text) {
    setStatus('the text changed since this suggestion; select the span again', true);
  } else {
    const [start, end] = shown.range;
    ui.text.value = shown.text.slice(0, start) + shown.suggestion + shown.text.slice(end);
    ui.text.focus();
    ui.text.setSelectionRange(start, start + shown.suggestion.length);
    setStatus('accepted');
  }
  dismiss();
}

function dismiss() {
  shown = null;
  ui.result.hidden = true;
}

function onProgress(p) {
  if (!p.file) return;
  const f = files.get(p.file) ?? { loaded: 0, total: 0, done: false };
  if (p.status === 'progress') Object.assign(f, { loaded: p.loaded ?? 0, total: p.total ?? 0 });
  if (p.status === 'done') Object.assign(f, { loaded: f.total, done: true });
  files.set(p.file, f);
  const all = [...files.values()];
  const loaded = all.reduce((s, x) => s + x.loaded, 0);
  const total = all.reduce((s, x) => s + x.total, 0);
  if (total > 0) ui.progress.value = loaded / total;
  // Downloads are over once the ONNX file is in; building the session can still take a while.
  const preparing = [...files.keys()].some((name) => name.endsWith('.onnx')) && all.every((x) => x.done);
  ui.loadLabel.textContent = preparing ? 'Preparing the model (building the ONNX Runtime session)…' : 'Loading the model…';
  ui.loadDetail.textContent = `${(loaded / 1e6).toFixed(1)} / ${(total / 1e6).toFixed(1)} MB · ${p.file}`;
}

function onWorkerMessage({ data: msg }) {
  switch (msg.type) {
    case 'progress':
      onProgress(msg.progress);
      break;
    case 'ready':
      ready = true;
      ui.loading.hidden = true;
      ui.suggest.disabled = false;
      ui.modelName.textContent = `${config.model} (${msg.dtype})`;
      document.body.dataset.dtype = msg.dtype;
      document.body.dataset.device = msg.device;
      ui.backend.textContent = `${msg.device === 'wasm' ? `WASM (CPU, ${msg.threads} thread${msg.threads > 1 ? 's' : ''})` : 'WebGPU'}`
        + ` · loaded in ${(msg.loadMs / 1000).toFixed(1)} s`;
      document.body.dataset.threads = String(msg.threads);
      document.body.dataset.ready = 'true';
      setStatus('ready');
      break;
    case 'partial':
      if (pending && msg.id === pending.id) {
        pending.streamed += msg.text;
        setStatus(`correcting “${pending.spanIn}”… ${pending.streamed}`);
      }
      break;
    case 'result':
      if (pending && msg.id === pending.id) {
        showResult(pending, msg);
        pending = null;
        ui.suggest.disabled = false;
        setStatus('');
      }
      break;
    case 'error':
      if (!ready && device === 'webgpu' && !params.get('device')) {
        console.warn(`WebGPU failed (${msg.message}); falling back to WASM`);
        startWorker('wasm');
        break;
      }
      if (!ready) ui.loadLabel.textContent = 'The model could not be loaded';
      setStatus(msg.message, true);
      document.body.dataset.error = msg.message;
      if (pending && msg.id === pending.id) pending = null;
      ui.suggest.disabled = !ready;
      break;
  }
}

ui.suggest.addEventListener('click', requestSuggestion);
ui.accept.addEventListener('click', accept);
ui.reject.addEventListener('click', () => { dismiss(); setStatus('rejected'); });
ui.text.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); requestSuggestion(); }
  if (e.key === 'Escape') dismiss();
});
ui.text.addEventListener('mouseup', () => {
  if (ui.auto.checked && ui.text.selectionStart !== ui.text.selectionEnd) requestSuggestion();
});
ui.text.addEventListener('input', () => { if (shown) dismiss(); });

/** A fresh worker for ``dev``: ONNX Runtime's wasm build is fixed once loaded, so a fallback needs a new one. */
function startWorker(dev) {
  worker?.terminate();
  device = dev;
  files.clear();
  const dtype = params.get('dtype') ?? undefined; // undefined: the fastest faithful file for the device (defaultDtype)
  ui.modelName.textContent = `${config.model} (${dtype ?? 'choosing the file…'})`;
  ui.backend.textContent = `loading on ${device}…`;
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker.addEventListener('message', onWorkerMessage);
  worker.addEventListener('error', (e) => setStatus(`worker failed: ${e.message}`, true));
  worker.postMessage({ type: 'load', modelRoot: config.modelRoot, model: config.model, dtype, device,
                       wasmPaths: config.wasmPaths[device], threads: Number(params.get('threads')) || undefined });
}

async function start() {
  config = await (await fetch('/demo-config.json')).json();
  const gpu = navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null));
  startWorker(params.get('device') ?? (gpu ? 'webgpu' : 'wasm'));
}

start().catch((err) => setStatus(`cannot start: ${err.message}`, true));

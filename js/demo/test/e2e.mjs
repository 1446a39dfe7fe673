// Drives the browser demo and the Node harness on the same cases (tests/test_browser.py and
// benchmarks/browser_latency.py serve the page and call this).
//
//   node demo/test/e2e.mjs --url http://127.0.0.1:PORT/ --model EXPORT_DIR --cases CASES.json --out RESULT.json \
//        [--screenshot SHOT.png] [--warmup N] [--device wasm] [--dtype q4] [--threads N]
//
// Each case is { text, start, end } in code points (start == end is a caret; "screenshot": true marks the
// one to capture). The Node harness is src/corrector.js on onnxruntime-node; the page runs the same module
// with Transformers.js WASM in a Web Worker inside Debian's Chromium. RESULT.json gets both sides' answers
// and latencies, plus every URL the browser requested and any page error.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

import { createSpanCorrector } from '../../src/corrector.js';
import { selectSpan } from '../../src/prompt.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Offline, quiet Chromium: no background connections (this machine refuses them), fresh profile; no GPU, except
// with --device webgpu: then WebGPU is switched on (on a machine without a GPU its adapter is SwiftShader, a CPU
// emulation: right for checking answers, not for timing).
const QUIET_FLAGS = ['--headless', '--no-sandbox', '--no-first-run', '--disable-quic',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const LOAD_TIMEOUT_MS = 300_000;
const CASE_TIMEOUT_MS = 120_000;

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' }, model: { type: 'string' }, out: { type: 'string' }, cases: { type: 'string' },
    screenshot: { type: 'string' }, device: { type: 'string', default: 'wasm' },
    dtype: { type: 'string', default: 'q4' }, threads: { type: 'string' }, warmup: { type: 'string', default: '0' },
  },
});
const CHROMIUM_FLAGS = [...QUIET_FLAGS, ...(args.device === 'webgpu' ? ['--enable-unsafe-webgpu'] : ['--disable-gpu'])];
const cases = JSON.parse(readFileSync(args.cases, 'utf8'));
const warmup = cases.slice(0, Number(args.warmup));

/** UTF-16 index of a code-point offset (what textarea.setSelectionRange takes). */
const toUtf16 = (text, cp) => Array.from(text).slice(0, cp).join('').length;

async function nodeAnswers() {
  const t0 = performance.now();
  const sessionOptions = args.threads ? { intraOpNumThreads: Number(args.threads) } : undefined;
  const corrector = await createSpanCorrector({ modelPath: args.model, dtype: args.dtype, device: 'cpu', sessionOptions });
  const loadMs = performance.now() - t0;
  const ask = (c) => corrector.correct(selectSpan(c.text, c.start, c.end));
  for (const c of warmup) await ask(c);
  const answers = [];
  for (const c of cases) {
    const example = selectSpan(c.text, c.start, c.end);
    const { text, overrun, verbose, fallback, raw, tokens, passes, latencyMs } = await corrector.correct(example);
    answers.push({ example, raw, result: { text, overrun, verbose, fallback }, tokens: tokens.length, passes, latencyMs });
  }
  return { answers, loadMs };
}

/** Put a case into the page, select it, press Suggest and read what the page shows. */
async function askPage(page, c, id) {
  await page.fill('#text', c.text);
  await page.evaluate(([s, e]) => {
    const ta = document.getElementById('text');
    ta.focus();
    ta.setSelectionRange(s, e);
  }, [toUtf16(c.text, c.start), toUtf16(c.text, c.end)]);
  const t0 = performance.now();
  await page.click('#suggest');
  await page.waitForFunction((n) => document.body.dataset.lastId === String(n) || document.body.dataset.error,
    id, { timeout: CASE_TIMEOUT_MS });
  const wallMs = performance.now() - t0;
  const shown = await page.evaluate(() => {
    const result = document.getElementById('result');
    return {
      state: result.dataset.state,
      spanIn: document.getElementById('span-in').textContent,
      suggestion: document.getElementById('suggestion').textContent,
      raw: document.getElementById('raw').textContent,
      latency: document.getElementById('latency').textContent,
      latencyMs: Number(result.dataset.latencyMs),
      tokens: Number(result.dataset.tokens),
      passes: Number(result.dataset.passes),
      acceptVisible: !document.getElementById('accept').hidden,
      error: document.body.dataset.error ?? null,
    };
  });
  if (shown.error) throw new Error(`the page failed: ${shown.error}`);
  return { ...shown, wallMs };
}

async function browserAnswers() {
  const profile = mkdtempSync(join(tmpdir(), 'spantune-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 960, height: 720 },
  });
  const requests = [];
  const errors = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('request', (r) => requests.push(r.url()));
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    const t0 = performance.now();
    const query = new URLSearchParams({ device: args.device, dtype: args.dtype, ...(args.threads ? { threads: args.threads } : {}) });
    await page.goto(`${args.url}?${query}`);
    await page.waitForFunction(() => document.body.dataset.ready || document.body.dataset.error,
      null, { timeout: LOAD_TIMEOUT_MS });
    const loadError = await page.evaluate(() => document.body.dataset.error);
    if (loadError) throw new Error(`the page could not load the model: ${loadError}`);
    const loadMs = performance.now() - t0;

    let id = 0;
    for (const c of warmup) await askPage(page, c, ++id);
    const answers = [];
    for (const c of cases) {
      const shown = await askPage(page, c, ++id);
      if (c.screenshot && args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
      if (shown.acceptVisible) {
        await page.click('#accept');
        shown.afterAccept = await page.inputValue('#text');
      }
      answers.push(shown);
    }
    const threads = Number(await page.evaluate(() => document.body.dataset.threads));
    const { dtype, device } = await page.evaluate(() => ({ ...document.body.dataset }));
    // whether this Chromium offers WebGPU at all (an adapter), whatever device the page was asked to use
    const webgpu = await page.evaluate(async () => Boolean(navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null))));
    return { answers, requests, errors, loadMs, threads, dtype, device, webgpu, userAgent: await page.evaluate(() => navigator.userAgent) };
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

const node = await nodeAnswers();
const browser = await browserAnswers();
writeFileSync(args.out, JSON.stringify({ node: node.answers, nodeLoadMs: node.loadMs, browser }, null, 2));

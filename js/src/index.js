// spantune for JavaScript: the prompt contract, post-processing and a Transformers.js span corrector.
export * from './prompt.js';
export * from './postprocess.js';
export { encodePrompt, renderPrompt, replyStopIds } from './encode.js';
export { calibratedKeepMargin, editPreference, KEEP_MARGIN_UNIT, keepReplyIds, keepsSpan, replyLogprob } from './keep.js';
export {
  copyDraft,
  coversPrefix,
  createSpanCorrector,
  defaultDtype,
  promptHeadIds,
  SPEED_ORDER,
  useLocalFolder,
} from './corrector.js';

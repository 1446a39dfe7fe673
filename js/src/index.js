// spantune for JavaScript: the prompt contract, post-processing and a Transformers.js span corrector.
export * from './prompt.js';
export * from './postprocess.js';
export {
  calibratedKeepMargin,
  copyDraft,
  coversPrefix,
  createSpanCorrector,
  defaultDtype,
  editPreference,
  encodePrompt,
  KEEP_MARGIN_UNIT,
  keepReplyIds,
  keepsSpan,
  promptHeadIds,
  renderPrompt,
  SPEED_ORDER,
  replyLogprob,
  replyStopIds,
  useLocalFolder,
} from './corrector.js';

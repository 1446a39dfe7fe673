// spantune for JavaScript: the prompt contract, post-processing and a Transformers.js span corrector.
export * from './prompt.js';
export * from './postprocess.js';
export {
  calibratedKeepMargin,
  createSpanCorrector,
  encodePrompt,
  keepReplyIds,
  keepsSpan,
  renderPrompt,
  replyLogprob,
  replyStopIds,
  useLocalFolder,
} from './corrector.js';

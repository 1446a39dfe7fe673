// Where the Node tests find what `npm test`'s pretest wrote (the tiny export and Python's expected outputs).
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ARTIFACTS = fileURLToPath(new URL('../test/.artifacts/', import.meta.url));
export const MODEL = ARTIFACTS + 'model';

/** The objects of a JSON-lines file under ARTIFACTS. */
export const readJsonl = (name) =>
  readFileSync(ARTIFACTS + name, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));

/** Python's expected rows (expected.jsonl); a missing file says how to make it. */
export function expectedRows() {
  if (!existsSync(ARTIFACTS + 'expected.jsonl')) {
    throw new Error(`${ARTIFACTS}expected.jsonl is missing: run \`npm test\` (its pretest writes it) or ` +
      '`cd tests && python -m support.export_fixture ../js/test/.artifacts`');
  }
  return readJsonl('expected.jsonl');
}

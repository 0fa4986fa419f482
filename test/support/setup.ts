// Loaded before every test file (scripts/test.sh --import). The tests run the sources in process (through tsx) but
// start `twinlayer` processes the way production does, from the compiled JavaScript in dist/ (bin/twinlayer.js,
// also what the lab spawns): so dist/ must be built from the sources under test. When a source or the build config
// is newer than the last build (dist/.tsbuildinfo), it is rebuilt here, once, before any test starts a process;
// a stale dist/ would test code that is not the code under review.
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const stamp = join(root, 'dist', '.tsbuildinfo');

function newestInput(): { path: string; mtimeMs: number } {
  let newest = { path: '', mtimeMs: 0 };
  const consider = (path: string): void => {
    const { mtimeMs } = statSync(path);
    if (mtimeMs > newest.mtimeMs) newest = { path, mtimeMs };
  };
  for (const f of ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json']) consider(join(root, f));
  for (const e of readdirSync(join(root, 'src'), { recursive: true, withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) consider(join(e.parentPath, e.name));
  }
  return newest;
}

const built = statSync(stamp, { throwIfNoEntry: false })?.mtimeMs ?? 0;
const newest = newestInput();
if (newest.mtimeMs > built) {
  process.stderr.write(`test setup: dist/ is older than ${newest.path.slice(root.length) || 'missing'}; building (npm run build)\n`);
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  // tsc leaves its build info alone when no output changed (a touched source): the stamp says "checked now".
  const now = new Date();
  utimesSync(stamp, now, now);
}

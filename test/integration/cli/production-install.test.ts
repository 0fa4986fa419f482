// A production install (`npm ci --omit=dev`) next to the built dist/: every daemon command loads and runs as far as
// its first outside call without a development dependency, and `twinlayer s3` and `twinlayer demo`, which need
// s3rver, say what to install instead of failing with a module-resolution stack trace. The tree is made here from
// what npm itself lists as the production packages (`npm ls --omit=dev`, read from node_modules and the lock file:
// no registry), linked into a node_modules of their own beside copies of bin/, dist/ and package.json.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { testKeyEnv } from '../../support/signing.js';
import { freePort, repoRoot } from '../../support/twinlayer.js';

const execFileP = promisify(execFile);

/** The top-level packages `npm ci --omit=dev` installs (names such as `zod`, `@aws-sdk/client-s3`). */
async function productionPackages(): Promise<string[]> {
  const { stdout } = await execFileP('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repoRoot, maxBuffer: 16 << 20, timeout: 60_000 });
  const top = join(repoRoot, 'node_modules');
  return [...new Set(stdout.split('\n').filter((p) => p.startsWith(top + '/')).map((p) => relative(top, p)).filter((name) => /^(@[^/]+\/)?[^/]+$/.test(name)))].sort();
}

async function run(tree: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(tree, 'bin', 'twinlayer.js'), ...args], {
    cwd: tree,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, out };
}

describe('a production install (npm ci --omit=dev)', { timeout: 180_000 }, () => {
  let dir = '';
  let tree = '';
  let packages: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-prod-'));
    tree = join(dir, 'twinlayer');
    packages = await productionPackages();
    await mkdir(join(tree, 'node_modules'), { recursive: true });
    for (const what of ['bin', 'dist', 'package.json']) await cp(join(repoRoot, what), join(tree, what), { recursive: true });
    for (const name of packages) {
      await mkdir(dirname(join(tree, 'node_modules', name)), { recursive: true });
      await symlink(join(repoRoot, 'node_modules', name), join(tree, 'node_modules', name));
    }
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('holds the runtime dependencies and none of the tests\', demo\'s or benchmarks\' (s3rver, tsx, TypeScript)', () => {
    for (const name of ['@aws-sdk/client-s3', 'dockerode', 'hono', '@hono/node-server', 'chokidar', 'p-queue', 'tar', 'yaml', 'zod']) assert.ok(packages.includes(name), name);
    for (const name of ['s3rver', 'tsx', 'typescript', 'esbuild', 'fast-check', 'eslint', 'koa']) assert.ok(!packages.includes(name), `${name} is not installed`);
  });

  it('`twinlayer s3` says what to install, and starts nothing', async () => {
    const port = await freePort();
    const data = join(dir, 's3-data');
    const r = await run(tree, ['s3', '--dir', data, '--listen', `127.0.0.1:${port}`]);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /^twinlayer: `twinlayer s3` is the embedded S3 server for development and tests: it needs twinlayer's development dependencies, and the package s3rver is not installed \(a production install, npm ci --omit=dev, leaves them out\)\. Install them with `npm ci` in (\S+); production hosts use an S3-compatible server .* named by TWINLAYER_ENDPOINT .*\[DEV_DEPENDENCY_MISSING\]$/m);
    assert.match(r.out, new RegExp(`npm ci\` in ${tree.replaceAll('/', '\\/')};`), 'names the installed tree');
    assert.doesNotMatch(r.out, /\n\s+at /, 'no stack trace');
    assert.equal(await stat(data).catch(() => null), null, 'no data dir created');
  });

  it('`twinlayer demo` says what to install', async () => {
    // As root (the suite runs as root) the demo gets past its own check and reaches the lab's import.
    const r = await run(tree, ['demo']);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /^twinlayer: `twinlayer demo` runs the lab with the embedded S3 server: it needs twinlayer's development dependencies, and the package s3rver is not installed .*\(or run `npm run demo`, which does\) \[DEV_DEPENDENCY_MISSING\]$/m);
  });

  it('agent, push, pull and status load everything they need and get to their first outside call', async () => {
    const closed = await freePort();
    // The hook listens before the bucket is asked: on a port of its own, not the one nothing answers on.
    const hookPort = await freePort();
    const env = {
      TWINLAYER_BUCKET: 'twinlayer', TWINLAYER_ENDPOINT: `http://127.0.0.1:${closed}`, TWINLAYER_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_REGION: 'us-east-1',
      TWINLAYER_STATE_DIR: join(dir, 'state'), TWINLAYER_DOCKER_SOCKET: join(dir, 'no-docker.sock'), TWINLAYER_VRRP_STATE_FILE: join(dir, 'vrrp-state'),
      TWINLAYER_HOOK_LISTEN: `127.0.0.1:${hookPort}`, TWINLAYER_HOOK_ALLOW_NO_TOKEN: 'true',
      // Signed, as every daemon must be by default: the signature set-up (node:crypto, the key file) loads too.
      ...(await testKeyEnv(dir)),
    };
    const unreachable = new RegExp(`S3 endpoint http://127\\.0\\.0\\.1:${closed} unreachable .*\\[STORE_UNREACHABLE\\]`);
    const cases: Array<[string, number, RegExp]> = [
      // The agent goes on without the bucket: it stops at the engine, after its whole module graph loaded.
      ['agent', 2, /docker info failed: connect ENOENT .*no-docker\.sock \[DOCKER_API\]/],
      ['push', 2, unreachable],
      ['pull', 2, unreachable],
      ['status', 1, /no pusher status at .* and no puller hook at http:\/\/127\.0\.0\.1:\d+\/v1\/status/],
    ];
    for (const [command, code, message] of cases) {
      const r = await run(tree, [command], env);
      assert.equal(r.code, code, `${command}: ${r.out}`);
      assert.match(r.out, message, command);
      assert.doesNotMatch(r.out, /ERR_MODULE_NOT_FOUND|Cannot find (package|module)/, command);
    }
  });
});

// bin/twinlayer.js runs the daemons (agent, push, pull) with V8's young generation capped and glibc's mmap threshold
// fixed: the process re-executes itself with --max-semi-space-size and MALLOC_MMAP_THRESHOLD_, keeping its pid.
// Checked on the real CLI process while its start waits at the bucket check (a listener that accepts and never
// answers, where the S3 endpoint would be): its /proc cmdline is what V8 was set up from, its /proc environ what
// malloc read. What the caller sets (NODE_OPTIONS, the malloc variable) is kept; a short command is not re-run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GroupKeys } from '../../../src/lab/group-keys.js';
import { spawnTwinlayer } from '../../support/twinlayer.js';

/** A TCP listener that holds every connection: a start waits at its first bucket request. */
async function heldEndpoint(): Promise<{ url: string; connected: Promise<void>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let onFirst!: () => void;
  const connected = new Promise<void>((resolve) => (onFirst = resolve));
  const server: Server = createServer((s) => {
    sockets.add(s);
    onFirst();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    connected,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('the daemons\' young generation (CLI, no engine, no S3 server)', { timeout: 120_000 }, () => {
  let dir: string;
  let keys: GroupKeys;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-young-'));
    keys = await GroupKeys.create(join(dir, 'keys'), ['young']);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts `twinlayer <args>` against a held endpoint and returns its argv as /proc shows it once it waits there. */
  async function cmdlineWhileStarting(args: string[], extraEnv: Record<string, string> = {}): Promise<{ argv: string[]; env: string[]; pid: number }> {
    const endpoint = await heldEndpoint();
    const p = spawnTwinlayer(args, {
      AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret',
      TWINLAYER_ENDPOINT: endpoint.url, TWINLAYER_BUCKET: 'young-twins', TWINLAYER_PATH_STYLE: 'true',
      TWINLAYER_GROUP: 'young', TWINLAYER_HOST_ID: 'young', ...keys.env('young'),
      TWINLAYER_STATE_DIR: join(dir, `state-${args[0]}`), TWINLAYER_VRRP_STATE_FILE: join(dir, 'vrrp'),
      TWINLAYER_DOCKER_SOCKET: join(dir, 'no-docker.sock'), TWINLAYER_HOOK_LISTEN: '127.0.0.1:0', TWINLAYER_HOOK_TOKEN: 'young-token-0123456789abcdef',
      ...extraEnv,
    });
    try {
      const exited = p.exited.then((code) => {
        throw new Error(`twinlayer ${args.join(' ')} exited (${code}) before its bucket check:\n${p.lines.join('\n')}`);
      });
      await Promise.race([endpoint.connected, exited]);
      const pid = p.child.pid;
      assert.ok(pid !== undefined);
      const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '');
      const env = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0').filter((a) => a !== '');
      return { argv, env, pid };
    } finally {
      await p.kill('SIGKILL');
      await endpoint.close();
    }
  }

  for (const command of ['push', 'pull', 'agent']) {
    it(`${command}: runs with --max-semi-space-size, in the process that was started (same pid, same arguments)`, async () => {
      const { argv, env } = await cmdlineWhileStarting([command]);
      assert.ok(env.includes('MALLOC_MMAP_THRESHOLD_=131072'), 'a fixed malloc mmap threshold in its environment');
      const caps = argv.filter((a) => a.startsWith('--max-semi-space-size='));
      assert.deepEqual(caps, ['--max-semi-space-size=4'], argv.join(' '));
      // Node's flags before the script, the command after it: the re-run is the same command.
      assert.ok(argv.indexOf(caps[0]!) < argv.findIndex((a) => a.endsWith('twinlayer.js')), argv.join(' '));
      assert.equal(argv.at(-1), command, argv.join(' '));
    });
  }

  it('an operator\'s MALLOC_MMAP_THRESHOLD_ is kept', async () => {
    const { argv, env } = await cmdlineWhileStarting(['agent'], { MALLOC_MMAP_THRESHOLD_: '262144' });
    assert.ok(argv.includes('--max-semi-space-size=4'), argv.join(' '));
    assert.deepEqual(env.filter((e) => e.startsWith('MALLOC_MMAP_THRESHOLD_=')), ['MALLOC_MMAP_THRESHOLD_=262144']);
  });

  it('a cap given in NODE_OPTIONS is left as it is: no second flag', async () => {
    const { argv } = await cmdlineWhileStarting(['push'], { NODE_OPTIONS: '--max-semi-space-size=8' });
    assert.deepEqual(argv.filter((a) => a.startsWith('--max-semi-space')), [], argv.join(' '));
  });

  it('a short command (ls) is not re-run with it', async () => {
    const { argv } = await cmdlineWhileStarting(['ls']);
    assert.deepEqual(argv.filter((a) => a.startsWith('--max-semi-space')), [], argv.join(' '));
    assert.equal(argv.at(-1), 'ls');
  });

  it('only the command decides: an operand named like a daemon (`ls push`) is no daemon', async () => {
    const { argv } = await cmdlineWhileStarting(['ls', 'push']);
    assert.deepEqual(argv.filter((a) => a.startsWith('--max-semi-space')), [], argv.join(' '));
  });
});

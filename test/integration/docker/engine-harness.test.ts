// The harness every Docker test relies on, for each engine kind (dockerd 20.10 on overlay2, dockerd 26 on the
// containerd image store with its own containerd): an engine inside a network namespace, a failed start, and a stop
// after dockerd was SIGKILLed all leave no process, mount or directory behind.
import { after, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, ENGINE_KINDS, startEngine, stopAllEngines } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import type { Engine, EngineKind } from '../../../src/lab/engine.js';
import { runtimeFor } from '../../support/engine.js';

const execFileP = promisify(execFile);
const netns = `twl-h-${randomBytes(3).toString('hex')}`;

async function pidsMentioning(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if ((await readFile(`/proc/${entry}/cmdline`, 'utf8')).includes(marker)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

async function assertNothingLeft(engine: Engine): Promise<void> {
  assert.deepEqual(await pidsMentioning(engine.baseDir), [], 'no process of the engine is left');
  assert.equal((await readFile('/proc/self/mountinfo', 'utf8')).includes(engine.baseDir), false, 'no mount is left');
  assert.equal(existsSync(engine.baseDir), false, 'the engine dir is removed');
}

/** What `docker info` says of the engine's store, per kind. */
const STORE: Record<EngineKind, { version: RegExp; driver: string }> = {
  overlay2: { version: /^20\.10\./, driver: 'overlay2' },
  containerd: { version: /^26\./, driver: 'overlayfs' },
};

for (const kind of ENGINE_KINDS) describe(`engine harness (${kind})`, { timeout: 90_000 }, () => {
  const ns = `${netns}-${kind.slice(0, 3)}`;
  after(async () => {
    try {
      await stopAllEngines();
    } finally {
      await execFileP('ip', ['netns', 'del', ns]).catch(() => undefined);
    }
  });

  it('runs an engine inside a network namespace; host-network containers live there; stop leaves nothing', async () => {
    await execFileP('ip', ['netns', 'add', ns]);
    await execFileP('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const engine = await startEngine({ name: 'h-ns', netns: ns, kind });
    assert.equal(engine.kind, kind);
    const info = (await dockerCli(engine, ['info', '-f', '{{.ServerVersion}} {{.Driver}}'])).trim().split(' ');
    assert.match(info[0] ?? '', STORE[kind].version);
    assert.equal(info[1], STORE[kind].driver);
    const tag = 'twl-h:1';
    await importBusyboxImage(engine.socketPath, tag);
    await dockerCli(engine, ['run', '-d', '--name', 'srv', '--network', 'host', '-l', 'twinlayer.enable=true', tag, 'httpd', '-f', '-p', '127.0.0.1:8099', '-h', '/var/www']);
    // The container shares the namespace's network: the namespace's own loopback serves it, ours does not.
    // httpd binds right after `docker run -d` returns: retry a few times (bounded) rather than sleep.
    const { stdout } = await execFileP('ip', ['netns', 'exec', ns, 'curl', '-sS', '--retry', '20', '--retry-connrefused', '--retry-delay', '0', '--max-time', '10',
      'http://127.0.0.1:8099/index.html']);
    await assert.rejects(execFileP('curl', ['-sS', '--max-time', '2', 'http://127.0.0.1:8099/index.html']), 'our own loopback does not serve it');
    assert.match(stdout, /twinlayer test image/);
    const state = await runtimeFor(engine).twinState('srv');
    assert.ok(state.state === 'running' && state.mounted);
    await engine.stop();
    await assertNothingLeft(engine);
  });

  it('a failed start throws with the tail of dockerd\'s log and cleans up', async () => {
    const before = (await readdir('/tmp')).filter((d) => d.startsWith('twl-h-bad-'));
    await assert.rejects(startEngine({ name: 'h-bad', kind, extraArgs: ['--log-level', 'bogus'], startTimeoutMs: 10_000 }), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.match(err.message, /engine h-bad: dockerd exited with code 1/);
      assert.match(err.message, /dockerd log tail[\s\S]*bogus/);
      return true;
    });
    await assert.rejects(startEngine({ name: 'h-bad', kind, netns: `${ns}-absent` }), /network namespace "twl-h-[0-9a-f]+-[a-z]+-absent" does not exist/);
    assert.deepEqual((await readdir('/tmp')).filter((d) => d.startsWith('twl-h-bad-')), before);
    assert.deepEqual(await pidsMentioning('/twl-h-bad-'), [], 'no dockerd or containerd of a failed start is left');
  });

  it('restart() after the engine was SIGKILLed (dockerd and its containerd) brings back its restart=always containers', async () => {
    const engine = await startEngine({ name: 'h-rst', kind });
    await importBusyboxImage(engine.socketPath, 'twl-h:1');
    await dockerCli(engine, ['run', '-d', '--name', 'always', '--restart', 'always', '--network', 'none', 'twl-h:1', 'sh', '-c', 'exec sleep 3600']);
    const before = engine.containerd?.pid;
    if (before !== undefined) process.kill(before, 'SIGKILL');
    process.kill(engine.pid, 'SIGKILL');
    await waitFor('dockerd gone', 10_000, async () => ((await readFile(`/proc/${engine.pid}/stat`, 'utf8').catch(() => null)) === null ? true : undefined));
    await engine.restart();
    assert.equal(engine.containerd === null, kind === 'overlay2');
    if (before !== undefined) assert.notEqual(engine.containerd?.pid, before, 'a new containerd');
    await waitFor('the restart=always container runs again', 30_000, async () =>
      ((await dockerCli(engine, ['inspect', '-f', '{{.State.Running}}', 'always'])).trim() === 'true' ? true : undefined));
    await engine.stop();
    await assertNothingLeft(engine);
  });

  it('stop() after dockerd was SIGKILLed reaps its containerd and shims, unmounts and removes the dirs', async () => {
    const engine = await startEngine({ name: 'h-kill', kind });
    await importBusyboxImage(engine.socketPath, 'twl-h:1');
    await dockerCli(engine, ['run', '-d', '--name', 'c1', '--network', 'none', 'twl-h:1', 'sh', '-c', 'exec sleep 3600']);
    const id = (await dockerCli(engine, ['inspect', '-f', '{{.Id}}', 'c1'])).trim();
    const containerdPid = engine.containerd?.pid;
    assert.equal(containerdPid === undefined, kind === 'overlay2', 'a containerd engine runs its own containerd');
    process.kill(engine.pid, 'SIGKILL');
    // stop() must cope with the engine's API being gone and its containerd/shim/container still around.
    await engine.stop();
    await assertNothingLeft(engine);
    assert.equal(existsSync(`/sys/fs/cgroup/pids/docker/${id}`), false, 'the container cgroup is removed');
    assert.equal(existsSync(`/sys/fs/cgroup/docker/${id}`), false, 'the container cgroup is removed');
  });
});

// The docker unit resolves a container's writable layer on both image stores (issue 11): overlay2's graph driver
// (dockerd 20.10) and the containerd image store (dockerd 26, containerd's overlayfs snapshotter, found through
// ctr for a stopped container and the rootfs mount for a running one). The dir it gives is the one the container
// reads and writes, it follows a container removed or recreated between two calls, and what it cannot trust is refused.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ContainerNotFoundError, DockerRuntime, EngineUnsupportedError, LayerResolveError } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, stopAllEngines } from '../../../src/lab/engine.js';
import type { Engine } from '../../../src/lab/engine.js';
import { ENGINE_KINDS, runtimeFor, runtimeOptionsFor } from '../../support/engine.js';

const LABEL = 'twinlayer.enable';
const TAG = 'twl-res:1';

/** The dir every upper dir of this engine must be in, and the shape of the path below it. */
function storeOf(engine: Engine): { root: string; upper: RegExp } {
  if (engine.containerd === null) return { root: join(engine.dataRoot, 'overlay2'), upper: /^[0-9a-f]{64}\/diff$/ };
  return { root: join(engine.containerd.root, 'io.containerd.snapshotter.v1.overlayfs'), upper: /^snapshots\/\d+\/fs$/ };
}

for (const kind of ENGINE_KINDS) describe(`layer resolution (${kind})`, { timeout: 120_000 }, () => {
  let engine: Engine;
  let rt: DockerRuntime;

  before(async () => {
    engine = await startEngine({ name: `res-${kind.slice(0, 3)}`, kind });
    rt = runtimeFor(engine);
    await importBusyboxImage(engine.socketPath, TAG);
  });

  after(async () => {
    await stopAllEngines();
  });

  it(`checkEngine accepts the engine and names its store (${kind})`, async () => {
    const facts = await rt.checkEngine();
    assert.equal(facts.store, kind);
    assert.equal(facts.dataRoot, engine.dataRoot);
  });

  it('a running container: the upper dir under the store\'s root receives what the container writes, and it is mounted', async () => {
    await dockerCli(engine, ['run', '-d', '--name', 'run1', '--network', 'none', '-l', `${LABEL}=true`, TAG, 'sh', '-c', 'echo ran > /srv/ran.txt; exec sleep 3600']);
    const layers = await rt.resolveLayers('run1');
    const store = storeOf(engine);
    assert.match(relative(store.root, layers.upperDir), store.upper);
    assert.ok(layers.lowerDirs.length >= 1);
    await dockerCli(engine, ['exec', 'run1', 'sh', '-c', 'echo hello > /srv/written.txt']);
    assert.equal(await readFile(join(layers.upperDir, 'srv/written.txt'), 'utf8'), 'hello\n');
    const state = await rt.twinState('run1');
    assert.ok(state.state === 'running' && state.mounted, 'running and mounted');
    assert.deepEqual(state.layers, layers);
    const listed = await rt.listProtected(LABEL);
    assert.deepEqual(listed.find((c) => c.name === 'run1')?.layers, layers);

    // Stopped: found again (through containerd on its store), the same dirs, no longer mounted.
    await dockerCli(engine, ['stop', '-t', '0', 'run1']);
    const stopped = await rt.twinState('run1');
    assert.ok(stopped.state === 'stopped');
    assert.equal(stopped.mounted, false);
    assert.equal(stopped.layers.upperDir, layers.upperDir);
    assert.deepEqual(stopped.layers.lowerDirs, layers.lowerDirs);
  });

  it('a created, never started container: what is written into its upper dir is what it sees when it starts', async () => {
    await dockerCli(engine, ['create', '--name', 'new1', '--network', 'none', TAG, 'sh', '-c', 'exec sleep 3600']);
    const state = await rt.twinState('new1');
    assert.ok(state.state === 'stopped' && !state.mounted);
    await writeFile(join(state.layers.upperDir, 'staged.txt'), 'staged\n');
    await dockerCli(engine, ['start', 'new1']);
    assert.equal(await dockerCli(engine, ['exec', 'new1', 'cat', '/staged.txt']), 'staged\n');
    assert.equal((await rt.resolveLayers('new1')).upperDir, state.layers.upperDir, 'the running mount names the same upper dir');
  });

  it('a container removed, or removed and recreated under its name, between two calls', async () => {
    await dockerCli(engine, ['create', '--name', 'again', '--network', 'none', TAG, 'sh']);
    const first = await rt.twinState('again');
    assert.ok(first.state === 'stopped');
    await dockerCli(engine, ['rm', 'again']);
    assert.deepEqual(await rt.twinState('again'), { state: 'absent' });
    await assert.rejects(rt.resolveLayers(first.id), ContainerNotFoundError);
    assert.equal(existsSync(first.layers.upperDir), false, 'the old upper dir went with the container');

    await dockerCli(engine, ['create', '--name', 'again', '--network', 'none', TAG, 'sh']);
    const second = await rt.twinState('again');
    assert.ok(second.state === 'stopped');
    assert.notEqual(second.id, first.id);
    assert.notEqual(second.layers.upperDir, first.layers.upperDir, 'the new container\'s own upper dir, not the old one');
    assert.ok(existsSync(second.layers.upperDir));
    await assert.rejects(rt.resolveLayers(first.id), ContainerNotFoundError, 'the old id stays gone');
  });

  it('an upper dir that is a symlink is refused', async () => {
    await dockerCli(engine, ['create', '--name', 'linked', '--network', 'none', TAG, 'sh']);
    const { upperDir } = await rt.resolveLayers('linked');
    await rename(upperDir, `${upperDir}.real`);
    await symlink(`${upperDir}.real`, upperDir);
    await assert.rejects(rt.resolveLayers('linked'), (err: unknown) => err instanceof LayerResolveError && /the upper dir is a symlink/.test(err.message));
  });

  if (kind === 'containerd') {
    it('refuses clearly when the containerd cannot be found, or is not the engine\'s', async () => {
      const nowhere = new DockerRuntime({ ...runtimeOptionsFor(engine), containerd: { socketPath: join(engine.baseDir, 'absent.sock'), ctrPath: engine.containerd?.ctrPath ?? 'ctr' } });
      await assert.rejects(nowhere.checkEngine(), (err: unknown) => err instanceof EngineUnsupportedError && /cannot find the engine's containerd: .*absent\.sock \(the configuration \(containerdSocket\)\)/.test(err.message));
      const noCtr = new DockerRuntime({ ...runtimeOptionsFor(engine), containerd: { ...runtimeOptionsFor(engine).containerd, ctrPath: join(engine.baseDir, 'no-ctr') } });
      await assert.rejects(noCtr.checkEngine(), (err: unknown) => err instanceof EngineUnsupportedError && /the containerd client ".*no-ctr" cannot be run/.test(err.message));
      // Another containerd of the same build: its version matches, but it has no snapshot of the engine's containers.
      const other = await startEngine({ name: 'res-other', kind: 'containerd' });
      try {
        const wrong = new DockerRuntime({ ...runtimeOptionsFor(engine), containerd: { socketPath: other.containerd?.socketPath ?? '', ctrPath: other.containerd?.ctrPath ?? 'ctr' } });
        await wrong.checkEngine();
        await dockerCli(engine, ['create', '--name', 'lost', '--network', 'none', TAG, 'sh']);
        await assert.rejects(wrong.resolveLayers('lost'), (err: unknown) => err instanceof LayerResolveError && /has no snapshot of the container; is it the engine's containerd\?/.test(err.message));
      } finally {
        await other.stop();
      }
    });

    it('refuses an engine on another snapshotter, saying why', async () => {
      const native = await startEngine({ name: 'res-native', kind: 'containerd', extraArgs: ['--storage-driver', 'native'] });
      try {
        assert.equal((await dockerCli(native, ['info', '-f', '{{.Driver}}'])).trim(), 'native');
        await assert.rejects(runtimeFor(native).checkEngine(), (err: unknown) => err instanceof EngineUnsupportedError
          && /the containerd image store runs the "native" snapshotter; twinlayer handles its overlayfs snapshotter only/.test(err.message));
      } finally {
        await native.stop();
      }
    });
  }
});

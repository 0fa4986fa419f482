import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { engineFactsFromInfo, EngineUnsupportedError } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

function withInfo(patch: Record<string, unknown>): unknown {
  return { ...(fixture('info-overlay2.json') as Record<string, unknown>), ...patch };
}

function refused(raw: unknown, reason: RegExp): void {
  assert.throws(() => engineFactsFromInfo(raw), (err: unknown) => {
    assert.ok(err instanceof EngineUnsupportedError, `expected EngineUnsupportedError, got ${String(err)}`);
    assert.equal(err.code, 'DOCKER_ENGINE_UNSUPPORTED');
    assert.match(err.message, reason);
    return true;
  });
}

describe('engineFactsFromInfo', () => {
  it('accepts overlay2 with native overlay diff and returns the data root', () => {
    const facts = engineFactsFromInfo(fixture('info-overlay2.json'));
    assert.deepEqual(facts, { dataRoot: '/tmp/twl-probe-emdM/data', driver: 'overlay2', store: 'overlay2', serverVersion: '20.10.24+dfsg1', cgroupnsDefault: 'host' });
  });

  it('accepts the containerd image store on the overlayfs snapshotter (dockerd 26 as captured here), with its containerd revision', () => {
    const facts = engineFactsFromInfo(fixture('info-containerd-26.json'));
    assert.deepEqual(facts, {
      dataRoot: '/tmp/twl-cap-ctd-wGHXxH/data', driver: 'overlayfs', store: 'containerd', serverVersion: '26.1.5+dfsg1', cgroupnsDefault: 'host',
      containerd: { commit: '1.7.24~ds1-6+deb13u1' },
    });
  });

  it('takes the containerd address and namespace docker info gives from Docker 27 on', () => {
    const raw = { ...(fixture('info-containerd-26.json') as Record<string, unknown>), Containerd: { Address: '/run/containerd/containerd.sock', Namespaces: { Containers: 'moby', Plugins: 'plugins.moby' } } };
    assert.deepEqual(engineFactsFromInfo(raw).containerd, { address: '/run/containerd/containerd.sock', namespace: 'moby', commit: '1.7.24~ds1-6+deb13u1' });
  });

  it('tells the default cgroup namespace from the cgroupns security option (cgroup v2, or default-cgroupns-mode=private)', () => {
    assert.equal(engineFactsFromInfo(withInfo({ SecurityOptions: ['name=seccomp,profile=default', 'name=cgroupns'] })).cgroupnsDefault, 'private');
    assert.equal(engineFactsFromInfo(withInfo({ SecurityOptions: null })).cgroupnsDefault, 'host');
  });

  it('accepts the containerd image store of Docker 28 (edited docker info)', () => {
    assert.equal(engineFactsFromInfo(fixture('info-containerd-snapshotter.json')).store, 'containerd');
  });

  it('refuses the containerd image store on another snapshotter, naming it and why', () => {
    const snapshotter = (driver: string): unknown => ({ ...(fixture('info-containerd-26.json') as Record<string, unknown>), Driver: driver });
    for (const driver of ['native', 'btrfs', 'zfs', 'stargz', 'fuse-overlayfs']) {
      refused(snapshotter(driver), new RegExp(`containerd image store runs the "${driver}" snapshotter; twinlayer handles its overlayfs snapshotter only`));
    }
    refused(withInfo({ DriverStatus: [['driver-type', 'io.containerd.snapshotter.v1'], ['Native Overlay Diff', 'true']] }), /runs the "overlay2" snapshotter/);
  });

  it('refuses "Native Overlay Diff: false" with the redirect_dir/metacopy reason', () => {
    refused(fixture('info-native-diff-false.json'), /"Native Overlay Diff" is false: overlayfs redirect_dir or metacopy/);
  });

  it('refuses when native overlay diff is not reported at all', () => {
    refused(withInfo({ DriverStatus: [['Backing Filesystem', 'extfs']] }), /does not report "Native Overlay Diff"/);
    refused(withInfo({ DriverStatus: null }), /does not report "Native Overlay Diff"/);
  });

  it('refuses other storage drivers', () => {
    refused(withInfo({ Driver: 'vfs', DriverStatus: [] }), /storage driver is "vfs"/);
    refused(withInfo({ Driver: 'btrfs' }), /storage driver is "btrfs"/);
  });

  it('refuses a relative or unnormalized data root', () => {
    refused(withInfo({ DockerRootDir: 'var/lib/docker' }), /DockerRootDir/);
    refused(withInfo({ DockerRootDir: '/var/lib/../lib/docker' }), /DockerRootDir/);
  });

  it('refuses a response that does not parse', () => {
    refused({ Driver: 'overlay2' }, /did not parse/);
    refused(null, /did not parse/);
  });
});

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
    assert.deepEqual(facts, { dataRoot: '/tmp/twl-probe-emdM/data', driver: 'overlay2', serverVersion: '20.10.24+dfsg1', cgroupnsDefault: 'host' });
  });

  it('tells the default cgroup namespace from the cgroupns security option (cgroup v2, or default-cgroupns-mode=private)', () => {
    assert.equal(engineFactsFromInfo(withInfo({ SecurityOptions: ['name=seccomp,profile=default', 'name=cgroupns'] })).cgroupnsDefault, 'private');
    assert.equal(engineFactsFromInfo(withInfo({ SecurityOptions: null })).cgroupnsDefault, 'host');
  });

  it('refuses the containerd snapshotter image store, naming it', () => {
    refused(fixture('info-containerd-snapshotter.json'), /containerd snapshotter/);
  });

  it('refuses the containerd snapshotter even if the driver were reported as overlay2', () => {
    refused(withInfo({ DriverStatus: [['driver-type', 'io.containerd.snapshotter.v1'], ['Native Overlay Diff', 'true']] }), /containerd snapshotter/);
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

// What staging may write into (pure): exactly the volumes the spec replicates, and nothing while another container
// uses one of them or the twin runs or is mounted.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import type { TwinState } from '../../../src/docker/index.js';
import { stageHold, stageTargetOf } from '../../../src/puller/stager.js';

type Present = Extract<TwinState, { state: 'stopped' | 'running' }>;
const twin = (over: Partial<Present> = {}): Present => ({
  state: 'stopped', id: 'abc', mounted: false, imageId: 'sha256:1', isTwin: true, specDigest: null,
  layers: { upperDir: '/var/lib/docker/overlay2/x/diff', workDir: '/var/lib/docker/overlay2/x/work', mergedDir: '/var/lib/docker/overlay2/x/merged', lowerDirs: [] },
  volumes: { data: '/var/lib/docker/volumes/data/_data', ops: '/var/lib/docker/volumes/ops/_data' },
  volumeUsers: {},
  ...over,
});
const spec = { volumes: [{ name: 'data', destination: '/data' }] };

describe('stageTargetOf', () => {
  it('with a spec, only the volumes it replicates; an operator volume the twin mounts besides is no target', () => {
    assert.deepEqual(stageTargetOf(twin(), spec).volumes, { data: '/var/lib/docker/volumes/data/_data' });
    assert.deepEqual(stageTargetOf(twin(), { volumes: [] }).volumes, {});
    assert.deepEqual(stageTargetOf(twin(), {}).volumes, {});
    assert.deepEqual(Object.keys(stageTargetOf(twin()).volumes ?? {}), ['data', 'ops'], 'recovery: every volume the twin mounts');
  });
});

describe('stageHold', () => {
  it('holds a running or mounted twin, and one whose replicated volume another container uses', () => {
    assert.equal(stageHold(twin(), spec), null);
    assert.equal(stageHold({ state: 'absent' }, spec), 'twin absent');
    assert.equal(stageHold(twin({ state: 'running' }), spec), 'twin is running or mounted; staging paused');
    assert.equal(stageHold(twin({ mounted: true }), spec), 'twin is running or mounted; staging paused');
    assert.equal(stageHold(twin({ volumeUsers: { data: ['intruder', 'other'] } }), spec), 'staging paused: volume data is used by container intruder, other on this host; a twin\'s volumes are its own');
    // A volume the spec does not replicate is never written: sharing it holds nothing.
    assert.equal(stageHold(twin({ volumeUsers: { ops: ['sidecar'] } }), spec), null);
    // Without a spec, every volume of the twin counts.
    assert.match(stageHold(twin({ volumeUsers: { ops: ['sidecar'] } }), null) ?? '', /volume ops is used by container sidecar/);
  });
});

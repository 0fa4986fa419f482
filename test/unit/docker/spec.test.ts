import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { createOptionsFromSpec, inspectSchema, specFromInspect, twinSpecSchema } from '../../../src/docker/index.js';
import type { TwinSpec } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

const capturedAt = new Date('2026-01-02T03:04:05.678Z');

function inspectFixture(patch: (o: Record<string, Record<string, unknown>>) => void = () => undefined): unknown {
  const raw = fixture('inspect-running.json') as Record<string, Record<string, unknown>>;
  patch(raw);
  return raw;
}

describe('specFromInspect', () => {
  it('maps a real docker inspect of `docker run -l twinlayer.enable=true -e FOO=bar -p 8080:80 --network none`', () => {
    const spec = specFromInspect(inspectSchema.parse(inspectFixture()), capturedAt);
    const expected: TwinSpec = {
      version: 1,
      name: 'c1',
      image: 't1:a',
      imageId: 'sha256:aedbe2863073b09c70907dc82d475cf1fed278464e41f9c4fb0c9f18ff25f85d',
      cmd: ['sh', '-c', 'sleep 1000'],
      entrypoint: null,
      env: ['FOO=bar'],
      labels: { 'twinlayer.enable': 'true' },
      workingDir: '',
      user: '',
      exposedPorts: ['80/tcp'],
      portBindings: { '80/tcp': [{ hostIp: '', hostPort: '8080' }] },
      networkMode: 'none',
      capturedAt: '2026-01-02T03:04:05.678Z',
    };
    assert.deepEqual(spec, expected);
  });

  it('keeps an explicit hostname and drops Docker\'s default (the short id)', () => {
    const custom = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['Config']!['Hostname'] = 'router1'; })), capturedAt);
    assert.equal(custom.hostname, 'router1');
    const dflt = specFromInspect(inspectSchema.parse(inspectFixture()), capturedAt);
    assert.equal('hostname' in dflt, false);
  });

  it('maps null Env/Labels/ExposedPorts/PortBindings to empty values', () => {
    const spec = specFromInspect(inspectSchema.parse(inspectFixture((o) => {
      o['Config']!['Env'] = null;
      o['Config']!['Labels'] = null;
      o['Config']!['ExposedPorts'] = null;
      o['HostConfig']!['PortBindings'] = null;
    })), capturedAt);
    assert.deepEqual([spec.env, spec.labels, spec.exposedPorts, spec.portBindings], [[], {}, [], {}]);
  });

  it('round-trips through JSON and twinSpecSchema', () => {
    const spec = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['Config']!['Hostname'] = 'h'; })), capturedAt);
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(spec))), spec);
  });
});

describe('twinSpecSchema', () => {
  const good = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), capturedAt);
  const bad: Array<[string, Record<string, unknown>]> = [
    ['a path as name', { name: '../etc' }],
    ['a name with a slash', { name: 'a/b' }],
    ['an empty name', { name: '' }],
    ['a short image id', { imageId: 'sha256:abc' }],
    ['an image ref as id', { imageId: 'busybox:latest' }],
    ['version 2', { version: 2 }],
    ['a non-string env', { env: [1] }],
    ['a bad port', { exposedPorts: ['80/tcpx'] }],
    ['a bad date', { capturedAt: 'yesterday' }],
    ['hostname undefined-as-null', { hostname: null }],
  ];
  for (const [what, patch] of bad) {
    it(`refuses ${what}`, () => {
      assert.equal(twinSpecSchema.safeParse({ ...good, ...patch }).success, false);
    });
  }
});

describe('createOptionsFromSpec', () => {
  const spec = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), capturedAt);

  it('creates by image id with restart policy off and the twin label instead of the opt-in label', () => {
    const o = createOptionsFromSpec({ ...spec, labels: { ...spec.labels, 'com.example.role': 'dns', 'twinlayer.twin': 'false' } });
    assert.equal(o.name, 'c1');
    assert.equal(o.Image, spec.imageId);
    assert.deepEqual(o.Labels, { 'com.example.role': 'dns', 'twinlayer.twin': 'true' });
    assert.deepEqual(o.HostConfig?.RestartPolicy, { Name: 'no' });
    assert.equal(o.HostConfig?.NetworkMode, 'none');
    assert.deepEqual(o.HostConfig?.PortBindings, { '80/tcp': [{ HostIp: '', HostPort: '8080' }] });
    assert.deepEqual(o.ExposedPorts, { '80/tcp': {} });
    assert.deepEqual(o.Cmd, ['sh', '-c', 'sleep 1000']);
    assert.deepEqual(o.Env, ['FOO=bar']);
  });

  it('leaves Cmd/Entrypoint/Hostname out when the spec has none (the image default applies)', () => {
    const o = createOptionsFromSpec({ ...spec, cmd: null, entrypoint: null });
    assert.equal('Cmd' in o, false);
    assert.equal('Entrypoint' in o, false);
    assert.equal('Hostname' in o, false);
    assert.equal(createOptionsFromSpec({ ...spec, hostname: 'r1' }).Hostname, 'r1');
    assert.deepEqual(createOptionsFromSpec({ ...spec, entrypoint: [] }).Entrypoint, []);
  });
});

import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { createOptionsFromSpec, inspectSchema, specDigest, specFromInspect, twinSpecSchema } from '../../../src/docker/index.js';
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
    const { config, hostConfig, networks, unsupported, volumes, ...spec } = specFromInspect(inspectSchema.parse(inspectFixture()), capturedAt);
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
      restartPolicy: { name: 'no', maximumRetryCount: 0 },
      capturedAt: '2026-01-02T03:04:05.678Z',
    };
    assert.deepEqual(spec, expected);
    // The run settings under Docker's names, as inspect shows them; the none network is the mode, not an attachment.
    assert.deepEqual(unsupported, []);
    assert.deepEqual(volumes, [], 'no volume mounted');
    assert.deepEqual(networks, {});
    assert.equal(hostConfig?.CgroupnsMode, 'host');
    assert.equal(hostConfig?.IpcMode, 'private');
    assert.equal(hostConfig?.ShmSize, 67108864);
    assert.deepEqual(hostConfig?.LogConfig, { Type: 'json-file', Config: {} });
    assert.equal('MaskedPaths' in (hostConfig ?? {}), false, 'derived by Docker from Privileged and SecurityOpt');
    assert.equal('RestartPolicy' in (hostConfig ?? {}), false, 'the spec\'s own field');
    assert.deepEqual(config, { Domainname: '', AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: false, OpenStdin: false, StdinOnce: false, Volumes: null });
  });

  it('keeps an explicit hostname and drops Docker\'s default (the short id)', () => {
    const custom = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['Config']!['Hostname'] = 'router1'; })), capturedAt);
    assert.equal(custom.hostname, 'router1');
    const dflt = specFromInspect(inspectSchema.parse(inspectFixture()), capturedAt);
    assert.equal('hostname' in dflt, false);
  });

  it('does not carry the hostname of a container in the host\'s UTS namespace (it is the host\'s; Docker refuses one)', () => {
    const spec = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['Config']!['Hostname'] = 'primary-host'; o['HostConfig']!['UTSMode'] = 'host'; })), capturedAt);
    assert.equal('hostname' in spec, false);
    assert.equal(spec.hostConfig?.UTSMode, 'host');
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

  it('remembers PortBindings null (a container created through the API) apart from {} (the CLI), so the twin shows the same', () => {
    const viaApi = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['HostConfig']!['PortBindings'] = null; })), capturedAt);
    assert.equal(viaApi.portBindingsNull, true);
    assert.equal(createOptionsFromSpec(twinSpecSchema.parse(JSON.parse(JSON.stringify(viaApi)))).HostConfig?.PortBindings, null);
    const viaCli = specFromInspect(inspectSchema.parse(inspectFixture((o) => { o['HostConfig']!['PortBindings'] = {}; })), capturedAt);
    assert.equal('portBindingsNull' in viaCli, false);
    assert.deepEqual(createOptionsFromSpec(viaCli).HostConfig?.PortBindings, {});
    assert.equal(specDigest(viaApi), specDigest(viaCli), 'an upgrade that records it recreates no twin and forces no full commit');
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
    ['portBindingsNull beside port bindings', { portBindingsNull: true }],
    ['portBindingsNull false', { portBindingsNull: false, portBindings: {} }],
  ];
  for (const [what, patch] of bad) {
    it(`refuses ${what}`, () => {
      assert.equal(twinSpecSchema.safeParse({ ...good, ...patch }).success, false);
    });
  }

  const reason = (networkMode: string): string => {
    const r = twinSpecSchema.safeParse({ ...good, networkMode });
    return r.success ? 'accepted' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };
  it('accepts the network modes a twin can be recreated with: Docker\'s own and user-defined networks', () => {
    for (const mode of ['none', 'host', 'bridge', 'default', 'my-net', 'net_1.internal', 'a', 'f'.repeat(64)]) assert.equal(reason(mode), 'accepted', mode);
  });
  it('refuses container:<x> and ns:<path> network modes, saying why', () => {
    assert.match(reason('container:web'), /^networkMode: .*joins another container's network namespace/);
    assert.match(reason('container:0123456789ab'), /another container's network namespace/);
    assert.match(reason('ns:/proc/1/ns/net'), /^networkMode: .*network namespace of the standby host by path/);
    assert.match(reason('ns:/var/run/netns/x'), /by path/);
  });
  it('refuses network modes outside Docker\'s name charset', () => {
    for (const mode of ['', ' host', 'a b', 'net/x', '-net', '.net', 'net\n', 'é', 'x'.repeat(256)]) {
      assert.match(reason(mode), /not none, host, bridge, default or a Docker network name/, JSON.stringify(mode));
    }
  });
});

describe('createOptionsFromSpec', () => {
  const spec = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), capturedAt);

  it('creates a full replica by image id: the primary\'s labels (opt-in label included) plus ours, restart policy off', () => {
    const o = createOptionsFromSpec({ ...spec, labels: { ...spec.labels, 'com.example.role': 'dns', 'twinlayer.twin': 'false' }, restartPolicy: { name: 'always', maximumRetryCount: 0 } }, 'g1');
    assert.equal(o.name, 'c1');
    assert.equal(o.Image, spec.imageId);
    assert.deepEqual(o.Labels, {
      'twinlayer.enable': 'true',
      'com.example.role': 'dns',
      'twinlayer.twin': 'true',
      'twinlayer.group': 'g1',
      'twinlayer.spec-digest': specDigest({ ...spec, labels: { ...spec.labels, 'com.example.role': 'dns', 'twinlayer.twin': 'false' }, restartPolicy: { name: 'always', maximumRetryCount: 0 } }),
    });
    assert.deepEqual(o.HostConfig?.RestartPolicy, { Name: 'no' }, 'a twin never restarts by itself');
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

describe('restart policy and spec digest', () => {
  it('captures the primary\'s restart policy; Docker\'s empty policy is no; specs without one still parse', () => {
    const raw = inspectFixture() as { HostConfig: { RestartPolicy: { Name: string; MaximumRetryCount: number } } };
    for (const [name, count, want] of [['always', 0, { name: 'always', maximumRetryCount: 0 }], ['on-failure', 3, { name: 'on-failure', maximumRetryCount: 3 }], ['', 0, { name: 'no', maximumRetryCount: 0 }]] as const) {
      raw.HostConfig.RestartPolicy = { Name: name, MaximumRetryCount: count };
      assert.deepEqual(specFromInspect(inspectSchema.parse(raw), new Date()).restartPolicy, want);
    }
    const { restartPolicy: _r, ...old } = specFromInspect(inspectSchema.parse(inspectFixture()), new Date());
    assert.equal(twinSpecSchema.safeParse(old).success, true, 'a spec captured before restart policies were recorded');
    assert.equal(twinSpecSchema.safeParse({ ...old, restartPolicy: { name: 'sometimes', maximumRetryCount: 0 } }).success, false);
  });

  it('never captures twinlayer\'s own labels into a spec (a promoted twin\'s spec is the user\'s config)', () => {
    const raw = inspectFixture() as { Config: { Labels: Record<string, string> } };
    raw.Config.Labels = { ...raw.Config.Labels, 'twinlayer.twin': 'true', 'twinlayer.spec-digest': 'x', 'twinlayer.group': 'g' };
    const labels = specFromInspect(inspectSchema.parse(raw), new Date()).labels;
    assert.equal('twinlayer.twin' in labels || 'twinlayer.spec-digest' in labels || 'twinlayer.group' in labels, false);
    assert.equal(labels['twinlayer.enable'], 'true');
  });

  it('the digest ignores the capture time and key order, and changes with the config', () => {
    const a = specFromInspect(inspectSchema.parse(inspectFixture()), new Date(1));
    const b = specFromInspect(inspectSchema.parse(inspectFixture()), new Date(2));
    assert.equal(specDigest(a), specDigest(b));
    const reordered = Object.fromEntries(Object.entries(a).reverse()) as typeof a;
    assert.equal(specDigest(reordered), specDigest(a));
    assert.notEqual(specDigest({ ...a, env: [...a.env, 'X=1'] }), specDigest(a));
    assert.notEqual(specDigest({ ...a, imageId: `sha256:${'1'.repeat(64)}` }), specDigest(a));
    assert.notEqual(specDigest({ ...a, restartPolicy: { name: 'always', maximumRetryCount: 0 } }), specDigest(a));
  });
});

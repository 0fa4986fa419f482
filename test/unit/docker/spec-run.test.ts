// The run settings of a spec: captured from a real docker inspect (fixtures/inspect-full.json: dockerd 20.10, a
// container using capabilities, a device, sysctls, ulimits, resources, tmpfs, init, healthcheck, two user-defined
// networks with static addresses, binds and volumes), what is recorded as not recreated, and what a spec from the
// bucket may not hold.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import {
  additionalNetworks, anonymousTwinVolumeName, createOptionsFromSpec, inspectSchema, parseBind, primaryNetworkOf, specFromInspect, twinSpecSchema,
  volumesFromInspect,
} from '../../../src/docker/index.js';
import type { TwinSpec } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

type Raw = Record<string, Record<string, unknown>>;
function full(patch: (o: Raw) => void = () => undefined): TwinSpec {
  const raw = fixture('inspect-full.json') as Raw;
  patch(raw);
  return specFromInspect(inspectSchema.parse(raw), new Date('2026-01-02T03:04:05Z'));
}

function reasonOf(spec: unknown): string {
  const r = twinSpecSchema.safeParse(spec);
  return r.success ? 'accepted' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

describe('run settings captured from docker inspect', () => {
  const spec = full();

  it('carries every field that defines how the container runs, under Docker\'s names', () => {
    const h = spec.hostConfig;
    assert.deepEqual(h?.CapAdd, ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
    assert.deepEqual(h?.CapDrop, ['CAP_MKNOD']);
    assert.deepEqual(h?.Devices, [{ PathOnHost: '/dev/net/tun', PathInContainer: '/dev/net/tun', CgroupPermissions: 'rwm' }]);
    assert.deepEqual(h?.Sysctls, { 'net.ipv4.ip_forward': '1' });
    assert.deepEqual(h?.SecurityOpt, ['no-new-privileges']);
    assert.deepEqual(h?.Ulimits, [{ Name: 'nofile', Hard: 2048, Soft: 1024 }]);
    assert.deepEqual([h?.Memory, h?.MemorySwap, h?.CpuShares, h?.PidsLimit], [67108864, 134217728, 512, 100]);
    assert.deepEqual(h?.Tmpfs, { '/run': 'rw,size=16m' });
    assert.equal(h?.Init, true);
    assert.deepEqual(h?.LogConfig, { Type: 'json-file', Config: { 'max-size': '1m' } });
    assert.deepEqual([h?.Dns, h?.DnsOptions, h?.DnsSearch, h?.ExtraHosts], [['192.0.2.53'], ['ndots:2'], ['example.test'], ['gw.example:192.0.2.1']]);
    assert.deepEqual(h?.Binds, ['/tmp/fs-scratch/bindsrc:/srv/bind:ro', 'leases:/var/lib/misc']);
    assert.deepEqual(h?.Mounts, [{ Type: 'volume', Source: 'certs', Target: '/certs' }, { Type: 'tmpfs', Target: '/scratch', TmpfsOptions: { SizeBytes: 1048576 } }]);
    const c = spec.config;
    assert.deepEqual(c?.Healthcheck, { Test: ['CMD-SHELL', 'true'], Interval: 5_000_000_000, Retries: 2 });
    assert.deepEqual([c?.StopSignal, c?.StopTimeout, c?.Domainname], ['SIGINT', 7, 'example.test']);
    assert.deepEqual(c?.Volumes, { '/anon': {} });
    assert.equal(spec.hostname, 'svc1');
    assert.deepEqual(spec.unsupported, []);
    assert.deepEqual(reasonOf(JSON.parse(JSON.stringify(spec))), 'accepted');
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(spec))), spec);
  });

  it('keeps the networks with their static addresses and aliases, without the aliases Docker derives (short id, hostname)', () => {
    assert.equal(spec.networkMode, 'svcnet');
    assert.deepEqual(spec.networks, {
      othernet: { IPAMConfig: { IPv4Address: '172.31.251.9' }, Aliases: ['fw'], DriverOpts: {} },
      svcnet: { IPAMConfig: { IPv4Address: '172.31.250.10' }, Aliases: ['dns1'], DriverOpts: null },
    });
    assert.equal(primaryNetworkOf(spec), 'svcnet');
    assert.deepEqual(additionalNetworks(spec).map(([n]) => n), ['othernet']);
    assert.equal(primaryNetworkOf({ ...spec, networkMode: 'default' }), 'bridge');
  });

  it('creates the twin with them: run settings as captured, the primary network at create, restart policy off', () => {
    const o = createOptionsFromSpec(spec, 'g');
    const h = o.HostConfig as Record<string, unknown>;
    for (const [key, value] of Object.entries(spec.hostConfig ?? {})) {
      if (key !== 'Binds') assert.deepEqual(h[key], value, key);
    }
    // The anonymous volume at /anon is the twin's named volume, bound where the primary's was.
    assert.deepEqual(h['Binds'], [...(spec.hostConfig?.Binds ?? []), `${anonymousTwinVolumeName('full', '/anon')}:/anon`]);
    assert.deepEqual(spec.volumes, [
      { name: anonymousTwinVolumeName('full', '/anon'), destination: '/anon', anonymous: true },
      { name: 'certs', destination: '/certs' },
      { name: 'leases', destination: '/var/lib/misc' },
    ]);
    assert.deepEqual(h['RestartPolicy'], { Name: 'no' });
    assert.equal(h['NetworkMode'], 'svcnet');
    const top = o as Record<string, unknown>;
    for (const [key, value] of Object.entries(spec.config ?? {})) assert.deepEqual(top[key], value, key);
    assert.deepEqual(o.NetworkingConfig, { EndpointsConfig: { svcnet: spec.networks?.['svcnet'] } });
    assert.equal(o.Hostname, 'svc1');
  });

  it('a spec captured before run settings were recorded still parses and creates as before', () => {
    const { config: _c, hostConfig: _h, networks: _n, unsupported: _u, volumes: _v, ...old } = spec;
    assert.equal(reasonOf(old), 'accepted');
    const o = createOptionsFromSpec({ ...old, networkMode: 'none' });
    assert.deepEqual(o.HostConfig, { NetworkMode: 'none', PortBindings: { '53/udp': [{ HostIp: '127.0.0.1', HostPort: '5353' }] }, RestartPolicy: { Name: 'no' } });
    assert.equal('NetworkingConfig' in o, false);
  });
});

describe('what a twin cannot be created with is recorded at capture, never dropped', () => {
  const cases: Array<[string, (o: Raw) => void, RegExp]> = [
    ['legacy links', (o) => { o['HostConfig']!['Links'] = ['/db:/web/db']; }, /^HostConfig\.Links is set .* not recreated/],
    ['volumes from another container', (o) => { o['HostConfig']!['VolumesFrom'] = ['data']; }, /^HostConfig\.VolumesFrom is set/],
    ['a volume driver', (o) => { o['HostConfig']!['VolumeDriver'] = 'nfs'; }, /^HostConfig\.VolumeDriver is set/],
    ['GPU device requests', (o) => { o['HostConfig']!['DeviceRequests'] = [{ Driver: 'nvidia', Count: -1 }]; }, /^HostConfig\.DeviceRequests is set/],
    ['a key of a newer engine', (o) => { o['HostConfig']!['Annotations'] = { a: 'b' }; }, /^HostConfig\.Annotations is set/],
    ['a Config key of a newer engine', (o) => { o['Config']!['Platform'] = 'x'; }, /^Config\.Platform is set/],
    ['the pid namespace of another container', (o) => { o['HostConfig']!['PidMode'] = 'container:db'; }, /^HostConfig\.PidMode "container:db": .*another container's namespace/],
    ['a local volume that binds a host path', (o) => {
      o['HostConfig']!['Mounts'] = [{ Type: 'volume', Source: 'v', Target: '/v', VolumeOptions: { DriverConfig: { Name: 'local', Options: { type: 'none', o: 'bind', device: '/etc' } } } }];
    }, /^HostConfig\.Mounts .*volume driver options are not recreated/],
    ['a healthcheck field this version does not know', (o) => { o['Config']!['Healthcheck'] = { Test: ['NONE'], StartInterval: 1 }; }, /^Config\.Healthcheck .*Unrecognized key/],
    ['links on a network endpoint', (o) => {
      const networks = (o['NetworkSettings']!['Networks'] as Record<string, Record<string, unknown>>);
      networks['svcnet']!['Links'] = ['db:db'];
    }, /^NetworkSettings\.Networks\.svcnet: links/],
  ];
  for (const [what, patch, want] of cases) {
    it(what, () => {
      const spec = full(patch);
      assert.equal(spec.unsupported?.length, 1, JSON.stringify(spec.unsupported));
      assert.match(spec.unsupported[0] ?? '', want);
    });
  }

  it('an unknown key without a value is not a difference', () => {
    assert.deepEqual(full((o) => { o['HostConfig']!['Annotations'] = null; o['HostConfig']!['NewFlag'] = false; o['Config']!['Platform'] = ''; }).unsupported, []);
  });
});

describe('a spec from the bucket: run settings are bounded and strict', () => {
  const good = JSON.parse(JSON.stringify(full())) as TwinSpec & Record<string, unknown>;
  const withHost = (patch: Record<string, unknown>): unknown => ({ ...good, hostConfig: { ...good.hostConfig, ...patch } });
  const bad: Array<[string, unknown, RegExp]> = [
    ['an unknown HostConfig key', withHost({ Annotations: {} }), /Unrecognized key/],
    ['a bind source with ..', withHost({ Binds: ['/srv/../etc:/x'] }), /not a normalized path|\.\. component/],
    ['a bind source that is neither path nor volume', withHost({ Binds: ['./etc:/x'] }), /neither an absolute path nor a volume name/],
    ['a bind with an unknown option', withHost({ Binds: ['/srv:/x:exec'] }), /unknown option/],
    ['a relative bind target', withHost({ Binds: ['/srv:x'] }), /not an absolute path/],
    ['a bind mount without source', withHost({ Mounts: [{ Type: 'bind', Target: '/x' }] }), /bind mount source/],
    ['an npipe mount', withHost({ Mounts: [{ Type: 'npipe', Source: 'x', Target: '/x' }] }), /Mounts\.0\.Type: Invalid option: expected one of "bind"\|"volume"\|"tmpfs"/],
    ['another volume driver', withHost({ Mounts: [{ Type: 'volume', Source: 'v', Target: '/v', VolumeOptions: { DriverConfig: { Name: 'nfs' } } }] }), /only the local volume driver/],
    ['a NUL in a tmpfs option', withHost({ Tmpfs: { '/run': 'size=1\0' } }), /NUL/],
    ['a relative tmpfs target', withHost({ Tmpfs: { run: 'size=1m' } }), /tmpfs targets are absolute paths/],
    ['300 capabilities', withHost({ CapAdd: Array.from({ length: 300 }, () => 'NET_ADMIN') }), /CapAdd: Too big: expected array to have <=256 items/],
    ['a capability that is not a name', withHost({ CapAdd: ['NET_ADMIN; rm'] }), /capability name/],
    ['an ipc namespace of another container', withHost({ IpcMode: 'container:db' }), /another container's namespace/],
    ['a device path with ..', withHost({ Devices: [{ PathOnHost: '/dev/../etc/shadow', PathInContainer: '/x', CgroupPermissions: 'rwm' }] }), /PathOnHost: .* is not a normalized path/],
    ['an oversized security option', withHost({ SecurityOpt: ['seccomp=' + 'x'.repeat(600 * 1024)] }), /SecurityOpt\.0: Too big: expected string to have <=524288 characters/],
    ['a sysctl name with a slash', withHost({ Sysctls: { 'net/ipv4': '1' } }), /sysctl names/],
    ['a network with a bad name', { ...good, networks: { 'a b': { IPAMConfig: null, Aliases: null, DriverOpts: null } } }, /networks.a b: Invalid key/],
    ['a static address that is not one', { ...good, networks: { svcnet: { IPAMConfig: { IPv4Address: '10.0.0.300' }, Aliases: null, DriverOpts: null } } }, /IPv4Address: Invalid IPv4 address/],
    ['65 networks', { ...good, networks: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`n${i}`, { IPAMConfig: null, Aliases: null, DriverOpts: null }])) }, /at most 64 networks/],
    ['an unknown Config key', { ...good, config: { ...good.config, Shell: ['sh'] } }, /Unrecognized key/],
    ['a stop signal that is not one', { ...good, config: { ...good.config, StopSignal: 'SIGTERM; reboot' } }, /signal/],
    ['unsupported that is not a list', { ...good, unsupported: 'x' }, /unsupported/],
  ];
  for (const [what, spec, want] of bad) {
    it(`refuses ${what}`, () => {
      assert.match(reasonOf(spec), want);
    });
  }
});

describe('parseBind', () => {
  it('tells bind mounts from named volumes and keeps the options', () => {
    assert.deepEqual(parseBind('/srv/x:/x:ro,rshared'), { kind: 'bind', source: '/srv/x', target: '/x', options: ['ro', 'rshared'] });
    assert.deepEqual(parseBind('leases:/var/lib/misc'), { kind: 'volume', source: 'leases', target: '/var/lib/misc', options: [] });
    assert.match(parseBind('/x') as string, /not source:target/);
    assert.match(parseBind('a:b:c:d') as string, /not source:target/);
    assert.match(parseBind('/srv//x:/x') as string, /not a normalized path/);
  });
});

describe('volumes of a spec', () => {
  it('a volume of another driver is recorded as not recreated, not replicated', () => {
    const { volumes, unsupported } = volumesFromInspect('c', [
      { Type: 'volume', Name: 'nfsdata', Source: '/mnt/nfs', Destination: '/data', Driver: 'nfs-plugin' },
      { Type: 'volume', Name: 'ok', Source: '/var/lib/docker/volumes/ok/_data', Destination: '/ok', Driver: 'local' },
      { Type: 'bind', Source: '/etc', Destination: '/hostetc' },
    ], { Binds: ['nfsdata:/data', 'ok:/ok', '/etc:/hostetc'] });
    assert.deepEqual(volumes, [{ name: 'ok', destination: '/ok' }]);
    assert.deepEqual(unsupported, ['volume nfsdata at /data uses the "nfs-plugin" driver; only local volumes are replicated']);
  });

  it('an anonymous volume given by --mount without a source gets the twin volume as its source', () => {
    const spec = full((o) => { o['HostConfig']!['Mounts'] = [{ Type: 'volume', Target: '/anon' }]; });
    assert.equal(reasonOf(spec), 'accepted');
    const h = createOptionsFromSpec(spec).HostConfig as Record<string, unknown>;
    assert.deepEqual(h['Mounts'], [{ Type: 'volume', Target: '/anon', Source: anonymousTwinVolumeName('full', '/anon') }]);
    assert.ok(!(h['Binds'] as string[]).some((b) => b.endsWith(':/anon')), 'not bound twice');
  });

  it('a spec from the bucket may not name a volume twice or mount one at a relative path', () => {
    const spec = full();
    assert.equal(twinSpecSchema.safeParse({ ...spec, volumes: [{ name: 'a', destination: '/x' }, { name: 'a', destination: '/y' }] }).success, false);
    assert.equal(twinSpecSchema.safeParse({ ...spec, volumes: [{ name: 'a', destination: 'x' }] }).success, false);
    assert.equal(twinSpecSchema.safeParse({ ...spec, volumes: [{ name: '../a', destination: '/x' }] }).success, false);
  });
});

// Which fields of a spec are privileged, when they are honoured (a trusted spec, and the host's policy), and what
// the standby itself must have (bind sources, devices, networks) — each refusal names its field.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TWIN_POLICY, hostIpAllowed, inspectSchema, portsAllowed, privilegesOf, specFromInspect, specRefusals, standbyProblems, twinSpecSchema } from '../../../src/docker/index.js';
import type { HostLookups, RunHostConfig, TwinPolicy, TwinSpec, VolumeFacts } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

const base = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), new Date());
const full = specFromInspect(inspectSchema.parse(fixture('inspect-full.json')), new Date());
const withHost = (patch: RunHostConfig, spec: TwinSpec = base): TwinSpec => ({ ...spec, hostConfig: { ...spec.hostConfig, ...patch } });
// The fixtures come from a cgroup v1 engine, whose containers share the host's cgroup namespace unless they ask.
const v1 = { cgroupnsMode: 'host' } as const;
const trusted = (policy: Partial<TwinPolicy> = {}) => ({ trusted: true, policy: { ...DEFAULT_TWIN_POLICY, ...policy }, engine: v1 });
const untrusted = { trusted: false, policy: DEFAULT_TWIN_POLICY, engine: v1 };
// The engine's networks and volumes, as the runtime looks them up (the real lookups are exercised in test/integration).
const lookups = (volumes: Record<string, VolumeFacts> = {}): HostLookups => ({
  network: (name) => Promise.resolve(name === 'svcnet' ? { subnets: ['172.31.250.0/24', 'fd00:1::/64'] } : null),
  volume: (name) => Promise.resolve(volumes[name] ?? null),
});

describe('privilegesOf', () => {
  it('a plain container asks for nothing privileged (Docker\'s defaults: cgroupns host, ipc private, json-file logs, runc)', () => {
    assert.deepEqual(privilegesOf(base, v1), []);
    assert.deepEqual(specRefusals(base, untrusted), []);
  });

  it('lists each privileged field of a container that uses them', () => {
    const described = privilegesOf(full, v1).map((p) => `${p.field} ${p.value}`);
    assert.deepEqual(described, [
      'HostConfig.CapAdd NET_ADMIN', 'HostConfig.CapAdd NET_RAW', 'HostConfig.Devices /dev/net/tun',
      'HostConfig.Binds/Mounts /tmp/fs-scratch/bindsrc', 'HostConfig.PortBindings 53/udp -> 127.0.0.1:5353', 'HostConfig.Sysctls net.ipv4.ip_forward',
    ]);
    const all = withHost({
      Privileged: true, DeviceCgroupRules: ['c *:* rwm'], CgroupParent: '/system.slice', SecurityOpt: ['no-new-privileges:true', 'seccomp=unconfined', 'apparmor=unconfined'],
      PidMode: 'host', IpcMode: 'host', UTSMode: 'host', UsernsMode: 'host', LogConfig: { Type: 'syslog', Config: { 'syslog-address': 'udp://192.0.2.1:514' } },
      Runtime: 'kata', Mounts: [{ Type: 'bind', Source: '/etc', Target: '/host-etc' }],
    }, { ...base, networkMode: 'host' });
    assert.deepEqual(privilegesOf(all, v1).map((p) => p.field), [
      'HostConfig.Privileged', 'HostConfig.DeviceCgroupRules', 'HostConfig.CgroupParent', 'HostConfig.SecurityOpt', 'HostConfig.SecurityOpt',
      'NetworkMode', 'HostConfig.PidMode', 'HostConfig.IpcMode', 'HostConfig.UTSMode', 'HostConfig.UsernsMode', 'HostConfig.Binds/Mounts',
      'HostConfig.LogConfig.Type', 'HostConfig.Runtime',
    ]);
  });
});

describe('specRefusals', () => {
  it('an untrusted spec with privileged fields is refused, naming every field', () => {
    const refusals = specRefusals(full, untrusted);
    assert.equal(refusals.length, 3, refusals.join('\n'));
    assert.match(refusals[0] ?? '', /not signed by a key the group trusts and asks for HostConfig\.CapAdd NET_ADMIN, HostConfig\.CapAdd NET_RAW, HostConfig\.Devices \/dev\/net\/tun, .*HostConfig\.Sysctls net\.ipv4\.ip_forward/);
    // The policy is applied too: the bind mount would be refused even from a signed spec.
    assert.match(refusals[1] ?? '', /host policy refuses HostConfig\.Binds\/Mounts \/tmp\/fs-scratch\/bindsrc \(allowedBindRoots: none\)/);
    assert.match(refusals[2] ?? '', /host policy refuses HostConfig\.PortBindings 53\/udp -> 127\.0\.0\.1:5353 \(allowedHostIps: none\)/);
    assert.deepEqual(specRefusals({ ...base, networkMode: 'host' }, untrusted).length, 1, 'host networking is privileged');
  });

  it('a trusted spec gets what the default policy allows: network capabilities, the tun device, net.* sysctls, host networking', () => {
    assert.deepEqual(specRefusals(withHost({ Binds: null }, full), trusted({ allowedHostIps: ['127.0.0.1'] })), []);
    assert.deepEqual(specRefusals({ ...base, networkMode: 'host' }, trusted()), []);
    assert.deepEqual(specRefusals(withHost({ CapAdd: ['net_bind_service', 'CAP_NET_BROADCAST'] }), trusted()), []);
  });

  it('the host policy refuses what it does not allow, naming the field and the setting', () => {
    const cases: Array<[RunHostConfig, RegExp]> = [
      [{ CapAdd: ['CAP_SYS_ADMIN'] }, /refuses HostConfig\.CapAdd SYS_ADMIN \(allowedCapabilities: NET_ADMIN, NET_RAW, NET_BIND_SERVICE, NET_BROADCAST\)/],
      [{ Privileged: true }, /refuses HostConfig\.Privileged true \(allowPrivileged: false\)/],
      [{ Devices: [{ PathOnHost: '/dev/sda', PathInContainer: '/dev/sda', CgroupPermissions: 'rwm' }] }, /refuses HostConfig\.Devices \/dev\/sda \(allowedDevices: \/dev\/net\/tun\)/],
      [{ Sysctls: { 'kernel.msgmax': '65536' } }, /refuses HostConfig\.Sysctls kernel\.msgmax \(allowedSysctls: net\.\*\)/],
      [{ PidMode: 'host' }, /refuses HostConfig\.PidMode host \(allowedHostNamespaces: network\)/],
      [{ SecurityOpt: ['seccomp=unconfined'] }, /refuses HostConfig\.SecurityOpt seccomp=unconfined \(allowSecurityOpts: false\)/],
      [{ Binds: ['/etc:/host-etc'] }, /refuses HostConfig\.Binds\/Mounts \/etc \(allowedBindRoots: none\)/],
      [{ DeviceCgroupRules: ['c *:* rwm'] }, /refuses HostConfig\.DeviceCgroupRules c \*:\* rwm \(allowPrivileged: false\)/],
    ];
    for (const [patch, want] of cases) {
      const refusals = specRefusals(withHost(patch), trusted());
      assert.equal(refusals.length, 1, refusals.join('\n'));
      assert.match(refusals[0] ?? '', want);
    }
  });

  it('policy settings open what they name, and only that', () => {
    assert.deepEqual(specRefusals(withHost({ Privileged: true, CgroupParent: 'x' }), trusted({ allowPrivileged: true })), []);
    assert.deepEqual(specRefusals(withHost({ CapAdd: ['SYS_ADMIN', 'SYS_TIME'] }), trusted({ allowedCapabilities: ['ALL'] })), []);
    assert.deepEqual(specRefusals(withHost({ Binds: ['/srv/app/data:/data', 'vol:/v'], Mounts: [{ Type: 'bind', Source: '/srv', Target: '/s' }] }), trusted({ allowedBindRoots: ['/srv'] })), []);
    assert.equal(specRefusals(withHost({ Binds: ['/srvx:/data'] }), trusted({ allowedBindRoots: ['/srv'] })).length, 1, '/srvx is not under /srv');
    assert.deepEqual(specRefusals(withHost({ Sysctls: { 'kernel.msgmax': '1' } }), trusted({ allowedSysctls: ['kernel.msgmax'] })), []);
    assert.deepEqual(specRefusals(withHost({ SecurityOpt: ['apparmor=unconfined'] }), trusted({ allowSecurityOpts: true })), []);
    assert.deepEqual(specRefusals(withHost({ SecurityOpt: ['no-new-privileges'] }), untrusted), [], 'no-new-privileges only restricts');
    // Trust alone is enough for a remote log driver or another runtime (the standby's daemon must know them).
    assert.deepEqual(specRefusals(withHost({ LogConfig: { Type: 'syslog', Config: {} } }), trusted()), []);
    assert.equal(specRefusals(withHost({ LogConfig: { Type: 'syslog', Config: {} } }), untrusted).length, 1);
  });

  it('a volume of the host that twinlayer did not create is mounted only from a trusted spec; the policy still has its say', () => {
    const spec = withHost({ Binds: ['opsdata:/data'] });
    assert.deepEqual(specRefusals(spec, untrusted), [], 'a volume the twin gets made for it is no privilege');
    const foreign = { ...untrusted, foreignVolumes: ['opsdata'] };
    assert.deepEqual(specRefusals(spec, foreign), [
      'the spec is not signed by a key the group trusts and asks for an existing volume of this host that twinlayer did not create: opsdata: privileged fields are honoured only from a signed spec',
    ]);
    assert.deepEqual(specRefusals(spec, { ...trusted(), foreignVolumes: ['opsdata'] }), []);
    assert.deepEqual(privilegesOf(spec, v1, ['opsdata']).map((p) => p.value), ['opsdata']);
  });

  it('what the primary recorded as not recreated refuses the twin, trusted or not', () => {
    const refusals = specRefusals({ ...base, unsupported: ['HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin'] }, trusted({ allowPrivileged: true }));
    assert.deepEqual(refusals, ['not recreated: HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin']);
  });
});

describe('standbyProblems (this host\'s files, devices and networks)', () => {
  const networks = lookups();

  it('reports a missing bind source, a symlink out of the bind roots, a missing device or one that is not a device, a missing network and a static address outside the subnet', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twl-standby-'));
    try {
      await mkdir(join(dir, 'root/data'), { recursive: true });
      await symlink('/etc', join(dir, 'root/escape'));
      await writeFile(join(dir, 'notadevice'), 'x');
      const policy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [join(dir, 'root')] };
      const spec: TwinSpec = {
        ...withHost({
          Binds: [`${dir}/root/data:/data`, `${dir}/root/missing:/m`, `${dir}/root/escape:/e`, 'vol:/v'],
          Devices: [{ PathOnHost: '/dev/null', PathInContainer: '/dev/null', CgroupPermissions: 'rwm' }, { PathOnHost: '/dev/twl-none', PathInContainer: '/dev/x', CgroupPermissions: 'rwm' }, { PathOnHost: join(dir, 'notadevice'), PathInContainer: '/dev/y', CgroupPermissions: 'r' }],
        }),
        networkMode: 'svcnet',
        networks: {
          svcnet: { IPAMConfig: { IPv4Address: '172.31.99.10', IPv6Address: 'fd00:1::10' }, Aliases: null, DriverOpts: null },
          gone: { IPAMConfig: null, Aliases: null, DriverOpts: null },
          bridge: { IPAMConfig: null, Aliases: null, DriverOpts: null },
        },
      };
      const problems = await standbyProblems(spec, policy, networks);
      assert.equal(problems.length, 6, problems.join('\n'));
      assert.match(problems[0] ?? '', new RegExp(`^bind-mount source ${dir}/root/missing does not exist on this host \\(ENOENT\\)`));
      assert.match(problems[1] ?? '', new RegExp(`^bind-mount source ${dir}/root/escape resolves to /etc, outside the allowed bind roots`));
      assert.match(problems[2] ?? '', /^device \/dev\/twl-none does not exist on this host \(ENOENT\)/);
      assert.match(problems[3] ?? '', /notadevice is not a device on this host/);
      assert.equal(problems[4], 'network gone does not exist on this host');
      assert.equal(problems[5], 'network svcnet on this host (172.31.250.0/24, fd00:1::/64) does not hold the static address 172.31.99.10');
      const fixed = { ...spec, hostConfig: { ...spec.hostConfig, Binds: [`${dir}/root/data:/data`], Devices: [] }, networks: { svcnet: { IPAMConfig: { IPv4Address: '172.31.250.10', IPv6Address: 'fd00:1::10' }, Aliases: null, DriverOpts: null } } };
      assert.deepEqual(await standbyProblems(fixed, policy, networks), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the host-side gates: host ports and addresses, the cgroup namespace, named volumes', () => {
  const ports = (bindings: TwinSpec['portBindings'], patch: Partial<TwinSpec> = {}): TwinSpec => ({ ...base, portBindings: bindings, ...patch });

  it('portsAllowed: every port of the range in the union of the entries of that protocol', () => {
    assert.equal(portsAllowed({ low: 8080, high: 8080 }, 'tcp', ['1024-65535']), true);
    assert.equal(portsAllowed({ low: 53, high: 53 }, 'udp', ['1024-65535']), false);
    assert.equal(portsAllowed({ low: 53, high: 53 }, 'udp', ['53/udp']), true);
    assert.equal(portsAllowed({ low: 53, high: 53 }, 'tcp', ['53/udp']), false);
    assert.equal(portsAllowed({ low: 8000, high: 8010 }, 'tcp', ['8000-8004', '8005/tcp', '8006-8010/tcp']), true);
    assert.equal(portsAllowed({ low: 8000, high: 8010 }, 'tcp', ['8000-8004', '8006-8010']), false, '8005 is not covered');
    assert.equal(portsAllowed({ low: 80, high: 80 }, 'tcp', []), false);
  });

  it('hostIpAllowed: addresses and CIDRs, v4 and v6', () => {
    assert.equal(hostIpAllowed('127.0.0.1', ['127.0.0.1']), true);
    assert.equal(hostIpAllowed('10.0.0.7', ['10.0.0.0/24']), true);
    assert.equal(hostIpAllowed('10.0.1.7', ['10.0.0.0/24']), false);
    assert.equal(hostIpAllowed('fd00::5', ['fd00::/64']), true);
    assert.equal(hostIpAllowed('not-an-ip', ['0.0.0.0/0']), false);
    assert.equal(hostIpAllowed('127.0.0.1', []), false);
  });

  it('a privileged host port or a specific host address is refused by default, naming the key, and needs trust', () => {
    const cases: Array<[TwinSpec, RegExp]> = [
      [ports({ '53/udp': [{ hostIp: '', hostPort: '53' }] }), /^the host policy refuses HostConfig\.PortBindings 53\/udp -> \*:53 \(allowedHostPorts: 1024-65535\)$/],
      [ports({ '80/tcp': [{ hostIp: '0.0.0.0', hostPort: '1-2000' }] }), /refuses HostConfig\.PortBindings 80\/tcp -> \*:1-2000 \(allowedHostPorts: 1024-65535\)/],
      [ports({ '80/tcp': [{ hostIp: '192.0.2.10', hostPort: '8080' }] }), /refuses HostConfig\.PortBindings 80\/tcp -> 192\.0\.2\.10:8080 \(allowedHostIps: none\)/],
      [ports({ '80/tcp': [{ hostIp: '::1', hostPort: '8080' }] }), /refuses HostConfig\.PortBindings 80\/tcp -> \[::1\]:8080 \(allowedHostIps: none\)/],
      [ports({ '80/tcp': [{ hostIp: '', hostPort: 'http' }] }), /refuses HostConfig\.PortBindings 80\/tcp -> \*:http \(allowedHostPorts: 1024-65535\)/],
    ];
    for (const [spec, want] of cases) {
      const refusals = specRefusals(spec, trusted());
      assert.equal(refusals.length, 1, refusals.join('\n'));
      assert.match(refusals[0] ?? '', want);
      assert.match(specRefusals(spec, untrusted)[0] ?? '', /not signed by a key the group trusts and asks for HostConfig\.PortBindings/);
    }
  });

  it('an unprivileged host port on the wildcard address needs no trust, yet must lie in allowedHostPorts', () => {
    const web = ports({ '80/tcp': [{ hostIp: '', hostPort: '8080' }], '443/tcp': [{ hostIp: '::', hostPort: '8443' }] });
    assert.deepEqual(specRefusals(web, untrusted), []);
    assert.deepEqual(specRefusals(web, trusted()), []);
    assert.deepEqual(specRefusals(web, trusted({ allowedHostPorts: ['8080/tcp'] })), ['the host policy refuses HostConfig.PortBindings 443/tcp -> *:8443 (allowedHostPorts: 8080/tcp)']);
    // Docker picks a port of the ephemeral range: 32768-60999 must be allowed.
    const ephemeral = ports({}, { exposedPorts: ['80/tcp'], hostConfig: { ...base.hostConfig, PublishAllPorts: true } });
    assert.deepEqual(specRefusals(ephemeral, trusted()), []);
    assert.deepEqual(specRefusals(ephemeral, trusted({ allowedHostPorts: ['8000-9000'] })), ['the host policy refuses HostConfig.PublishAllPorts 80/tcp -> *:(ephemeral) (allowedHostPorts: 8000-9000)']);
  });

  it('the policy opens what it names: listed ports, listed addresses', () => {
    const dns = ports({ '53/udp': [{ hostIp: '192.0.2.53', hostPort: '53' }], '53/tcp': [{ hostIp: '192.0.2.53', hostPort: '53' }] });
    assert.deepEqual(specRefusals(dns, trusted({ allowedHostPorts: ['53'], allowedHostIps: ['192.0.2.0/24'] })), []);
    assert.equal(specRefusals(dns, trusted({ allowedHostPorts: ['53/udp'], allowedHostIps: ['192.0.2.53'] })).length, 1, '53/tcp is not listed');
  });

  it('CgroupnsMode host is a host namespace where the engine\'s default is private, and nothing where it is the default', () => {
    const cg = withHost({ CgroupnsMode: 'host' });
    const v2 = { cgroupnsMode: 'private' } as const;
    assert.deepEqual(specRefusals(cg, { ...trusted(), engine: v2 }), ['the host policy refuses HostConfig.CgroupnsMode host (allowedHostNamespaces: network)']);
    assert.match(specRefusals(cg, { ...untrusted, engine: v2 })[0] ?? '', /not signed .* asks for HostConfig\.CgroupnsMode host/);
    assert.deepEqual(specRefusals(cg, { ...trusted({ allowedHostNamespaces: ['network', 'cgroup'] }), engine: v2 }), []);
    assert.deepEqual(specRefusals(cg, trusted()), [], 'a cgroup v1 engine gives every container the host\'s cgroup namespace');
    assert.deepEqual(specRefusals(withHost({ CgroupnsMode: 'private' }), { ...untrusted, engine: v2 }), []);
    // Not knowing the engine is strict.
    assert.equal(specRefusals(cg, { trusted: true, policy: DEFAULT_TWIN_POLICY }).length, 1);
  });

  it('--volumes-from and --link are never recreated: the primary records them, and a spec cannot carry them', () => {
    const inspect = inspectSchema.parse(fixture('inspect-running.json'));
    const spec = specFromInspect({ ...inspect, HostConfig: { ...inspect.HostConfig, VolumesFrom: ['db:ro'], Links: ['/db:/web/db'] } }, new Date());
    assert.deepEqual([...(spec.unsupported ?? [])].sort(), [
      'HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin', 'HostConfig.VolumesFrom is set (["db:ro"]) and is not recreated on a twin',
    ]);
    for (const key of ['VolumesFrom', 'Links']) {
      const hostile = twinSpecSchema.safeParse({ ...JSON.parse(JSON.stringify(base)) as object, hostConfig: { [key]: ['db'] } });
      assert.equal(hostile.success, false, `a spec with HostConfig.${key} does not parse`);
    }
    assert.equal(specRefusals(spec, trusted({ allowPrivileged: true })).length, 2);
  });

  it('named volumes on this host: a bind in disguise is held to the bind roots, other options and drivers to their keys', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'twl-volumes-'));
    try {
      await mkdir(join(dir, 'root/leases'), { recursive: true });
      const vols = lookups({
        plain: { driver: 'local', options: {} },
        etc: { driver: 'local', options: { type: 'none', o: 'bind', device: '/etc' } },
        leases: { driver: 'local', options: { type: 'none', o: 'bind', device: join(dir, 'root/leases') } },
        gone: { driver: 'local', options: { type: 'none', o: 'bind', device: join(dir, 'root/gone') } },
        nfs: { driver: 'local', options: { type: 'nfs', o: 'addr=192.0.2.1,rw', device: ':/export' } },
        ebs: { driver: 'rexray/ebs', options: {} },
      });
      const policy = { ...DEFAULT_TWIN_POLICY, allowedBindRoots: [join(dir, 'root')] };
      const spec = withHost({ Binds: ['plain:/a', 'etc:/b', 'leases:/c', 'absent:/d'], Mounts: [{ Type: 'volume', Source: 'gone', Target: '/e' }, { Type: 'volume', Source: 'nfs', Target: '/f' }, { Type: 'volume', Source: 'ebs', Target: '/g' }] });
      assert.deepEqual(await standbyProblems(spec, policy, vols), [
        `named volume ebs on this host has driver rexray/ebs, which the host policy refuses (allowedVolumeDrivers: local)`,
        `named volume etc on this host binds /etc, which the host policy refuses (allowedBindRoots: ${dir}/root)`,
        `named volume gone on this host binds ${dir}/root/gone, which does not exist on this host (ENOENT)`,
        `named volume nfs on this host has driver options type=nfs,o=addr=192.0.2.1,rw,device=:/export, which the host policy refuses (allowVolumeOptions: false)`,
      ]);
      const open = { ...policy, allowedVolumeDrivers: ['local', 'rexray/ebs'], allowVolumeOptions: true, allowedBindRoots: [join(dir, 'root'), '/etc'] };
      assert.deepEqual(await standbyProblems(withHost({ Binds: ['plain:/a', 'etc:/b', 'leases:/c', 'nfs:/f', 'ebs:/g'] }), open, vols), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a volume the primary does not replicate refuses the twin, trusted or not, unless the policy key for it allows a twin without its data', () => {
    const plugin = { name: 'plugvol', destination: '/p', driver: 'nfs-plugin', options: [] };
    const opts = { name: 'optvol', destination: '/o', driver: 'local', options: ['device', 'o', 'type'] };
    const spec: TwinSpec = { ...base, unreplicatedVolumes: [plugin, opts] };
    const want = [
      'not replicated: volume plugvol at /p uses the "nfs-plugin" driver; only local volumes are replicated, and the host policy refuses a twin without it (allowedVolumeDrivers: local)',
      'not replicated: volume optvol has driver options (device, o, type); only plain local volumes are replicated, and the host policy refuses a twin without it (allowVolumeOptions: false)',
    ];
    assert.deepEqual(specRefusals(spec, trusted()), want);
    assert.deepEqual(specRefusals(spec, untrusted), want);
    assert.deepEqual(specRefusals(spec, trusted({ allowedVolumeDrivers: ['local', 'nfs-plugin'] })), [want[1]]);
    assert.deepEqual(specRefusals(spec, trusted({ allowVolumeOptions: true })), [want[0]]);
    assert.deepEqual(specRefusals(spec, trusted({ allowedVolumeDrivers: ['local', 'nfs-plugin'], allowVolumeOptions: true })), []);
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(spec))).unreplicatedVolumes, [plugin, opts]);
  });

  it('a replicated volume that exists on this host must be a plain local one whatever the policy (it is staged into); a missing one is no problem', async () => {
    const spec: TwinSpec = { ...base, volumes: [{ name: 'data', destination: '/data' }, { name: 'absent', destination: '/absent' }] };
    const open = { ...DEFAULT_TWIN_POLICY, allowedVolumeDrivers: ['local', 'rexray/ebs'], allowVolumeOptions: true };
    assert.deepEqual(await standbyProblems(spec, open, lookups({ data: { driver: 'local', options: {} } })), []);
    assert.deepEqual(await standbyProblems(spec, open, lookups({ data: { driver: 'local', options: { type: 'tmpfs', device: 'tmpfs' } } })), [
      'named volume data on this host has driver options type=tmpfs,device=tmpfs; the twin\'s data is replicated into it, so it must be a plain local volume',
    ]);
    assert.deepEqual(await standbyProblems(spec, open, lookups({ data: { driver: 'rexray/ebs', options: {} } })), [
      'named volume data on this host has driver rexray/ebs; the twin\'s data is replicated into it, so it must be a plain local volume',
    ]);
  });
});

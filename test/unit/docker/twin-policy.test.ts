// Which fields of a spec are privileged, when they are honoured (a trusted spec, and the host's policy), and what
// the standby itself must have (bind sources, devices, networks) — each refusal names its field.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_TWIN_POLICY, inspectSchema, privilegesOf, specFromInspect, specRefusals, standbyProblems } from '../../../src/docker/index.js';
import type { RunHostConfig, TwinPolicy, TwinSpec } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

const base = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), new Date());
const full = specFromInspect(inspectSchema.parse(fixture('inspect-full.json')), new Date());
const withHost = (patch: RunHostConfig, spec: TwinSpec = base): TwinSpec => ({ ...spec, hostConfig: { ...spec.hostConfig, ...patch } });
const trusted = (policy: Partial<TwinPolicy> = {}) => ({ trusted: true, policy: { ...DEFAULT_TWIN_POLICY, ...policy } });
const untrusted = { trusted: false, policy: DEFAULT_TWIN_POLICY };

describe('privilegesOf', () => {
  it('a plain container asks for nothing privileged (Docker\'s defaults: cgroupns host, ipc private, json-file logs, runc)', () => {
    assert.deepEqual(privilegesOf(base), []);
    assert.deepEqual(specRefusals(base, untrusted), []);
  });

  it('lists each privileged field of a container that uses them', () => {
    const described = privilegesOf(full).map((p) => `${p.field} ${p.value}`);
    assert.deepEqual(described, [
      'HostConfig.CapAdd NET_ADMIN', 'HostConfig.CapAdd NET_RAW', 'HostConfig.Devices /dev/net/tun',
      'HostConfig.Binds/Mounts /tmp/fs-scratch/bindsrc', 'HostConfig.Sysctls net.ipv4.ip_forward',
    ]);
    const all = withHost({
      Privileged: true, DeviceCgroupRules: ['c *:* rwm'], CgroupParent: '/system.slice', SecurityOpt: ['no-new-privileges:true', 'seccomp=unconfined', 'apparmor=unconfined'],
      PidMode: 'host', IpcMode: 'host', UTSMode: 'host', UsernsMode: 'host', LogConfig: { Type: 'syslog', Config: { 'syslog-address': 'udp://192.0.2.1:514' } },
      Runtime: 'kata', Mounts: [{ Type: 'bind', Source: '/etc', Target: '/host-etc' }],
    }, { ...base, networkMode: 'host' });
    assert.deepEqual(privilegesOf(all).map((p) => p.field), [
      'HostConfig.Privileged', 'HostConfig.DeviceCgroupRules', 'HostConfig.CgroupParent', 'HostConfig.SecurityOpt', 'HostConfig.SecurityOpt',
      'NetworkMode', 'HostConfig.PidMode', 'HostConfig.IpcMode', 'HostConfig.UTSMode', 'HostConfig.UsernsMode', 'HostConfig.Binds/Mounts',
      'HostConfig.LogConfig.Type', 'HostConfig.Runtime',
    ]);
  });
});

describe('specRefusals', () => {
  it('an untrusted spec with privileged fields is refused, naming every field', () => {
    const refusals = specRefusals(full, untrusted);
    assert.equal(refusals.length, 2, refusals.join('\n'));
    assert.match(refusals[0] ?? '', /not signed by a key the group trusts and asks for HostConfig\.CapAdd NET_ADMIN, HostConfig\.CapAdd NET_RAW, HostConfig\.Devices \/dev\/net\/tun, .*HostConfig\.Sysctls net\.ipv4\.ip_forward/);
    // The policy is applied too: the bind mount would be refused even from a signed spec.
    assert.match(refusals[1] ?? '', /host policy refuses HostConfig\.Binds\/Mounts \/tmp\/fs-scratch\/bindsrc \(allowedBindRoots: none\)/);
    assert.deepEqual(specRefusals({ ...base, networkMode: 'host' }, untrusted).length, 1, 'host networking is privileged');
  });

  it('a trusted spec gets what the default policy allows: network capabilities, the tun device, net.* sysctls, host networking', () => {
    assert.deepEqual(specRefusals(withHost({ Binds: null }, full), trusted()), []);
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

  it('what the primary recorded as not recreated refuses the twin, trusted or not', () => {
    const refusals = specRefusals({ ...base, unsupported: ['HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin'] }, trusted({ allowPrivileged: true }));
    assert.deepEqual(refusals, ['not recreated: HostConfig.Links is set (["/db:/web/db"]) and is not recreated on a twin']);
  });
});

describe('standbyProblems (this host\'s files, devices and networks)', () => {
  // The engine's networks, as the runtime looks them up (the real lookup is exercised in test/integration/docker).
  const networks = (name: string): Promise<{ subnets: string[] } | null> => Promise.resolve(name === 'svcnet' ? { subnets: ['172.31.250.0/24', 'fd00:1::/64'] } : null);

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

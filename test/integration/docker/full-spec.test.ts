// The spec round trip (issue 9): containers that use every run setting a spec carries — capabilities added and
// dropped, privileged, devices and device cgroup rules, sysctls, security options, ulimits, resources, tmpfs, init,
// stop signal and timeout, healthcheck, log config, extra hosts, DNS, user-defined networks with static addresses and
// aliases, host namespaces, port bindings, binds, named and anonymous volumes — are captured on a primary engine and
// recreated on a second engine (both inside lab network namespaces, so their bridges live there). `docker inspect`
// of each twin equals the primary's field by field, except the id, what derives from it, and the restart policy; the
// started twin behaves the same inside. Then the refusals: an untrusted spec, the host's policy, and what the standby
// lacks (a bind source, a network, a device, a subnet holding the static address) — reported, and no twin created.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import {
  DEFAULT_TWIN_POLICY, DockerRuntime, HOST_NAMESPACES, TwinHostNotReadyError, TwinSpecRefusedError, twinSpecSchema,
} from '../../../src/docker/index.js';
import type { TwinPolicy, TwinSpec } from '../../../src/docker/index.js';
import { copyImage, importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli } from '../../../src/lab/engine.js';
import type { Engine } from '../../../src/lab/engine.js';
import { createLab } from '../../../src/lab/index.js';
import type { Lab } from '../../../src/lab/index.js';

const TAG = 'twl-fullspec:1';
const OWN_LABELS = ['twinlayer.twin', 'twinlayer.group', 'twinlayer.spec-digest'];
type Inspect = Record<string, unknown> & { Id: string; Config: Record<string, unknown>; HostConfig: Record<string, unknown>; Mounts: Array<Record<string, unknown>>; NetworkSettings: { Networks: Record<string, Record<string, unknown>>; Ports: unknown } };

async function inspect(engine: Engine, name: string): Promise<Inspect> {
  return (JSON.parse(await dockerCli(engine, ['inspect', name])) as Inspect[])[0]!;
}

/** A mount as both hosts must show it: a volume's host path is under each engine's own data root, an anonymous
 *  volume's name is random, and the twin mounts the named volume twinlayer made in its place (its content is
 *  replicated into it), which Docker shows as a bind of that name (mode `z`). */
function mountView(m: Record<string, unknown>, dataRoot: string): Record<string, unknown> {
  const anonymous = m['Type'] === 'volume' && (/^[0-9a-f]{64}$/.test(String(m['Name'])) || String(m['Name']).startsWith('twinlayer-anon-'));
  return {
    ...m,
    ...(anonymous ? { Name: '(anonymous)', Mode: '(anonymous)' } : {}),
    Source: m['Type'] === 'volume' ? String(m['Source']).replace(dataRoot, '<data-root>').replace(/[0-9a-f]{64}|twinlayer-anon-[0-9a-f]+/, '(anonymous)') : m['Source'],
  };
}

/** A network attachment without what derives from the container (its id, endpoint, the short id among the aliases). */
function endpointView(e: Record<string, unknown>, id: string): Record<string, unknown> {
  const { NetworkID: _n, EndpointID: _e, ...rest } = e;
  return { ...rest, Aliases: (e['Aliases'] as string[] | null)?.filter((a) => a !== id.slice(0, 12)) ?? null };
}

function anonymousBindsOut(binds: unknown): unknown {
  if (!Array.isArray(binds)) return binds;
  const kept = (binds as string[]).filter((b) => !b.startsWith('twinlayer-anon-'));
  return kept;
}

/** Everything of inspect that defines how the container runs, as both hosts must show it. */
function comparable(i: Inspect, dataRoot: string): Record<string, unknown> {
  const { RestartPolicy: _restart, ...hostConfig } = i.HostConfig;
  const { Image: _image, Labels: labels, ...config } = i.Config;
  const ownFree = Object.fromEntries(Object.entries((labels ?? {}) as Record<string, string>).filter(([k]) => !OWN_LABELS.includes(k)));
  return {
    Path: i['Path'], Args: i['Args'], Driver: i['Driver'], Platform: i['Platform'], AppArmorProfile: i['AppArmorProfile'],
    MountLabel: i['MountLabel'], ProcessLabel: i['ProcessLabel'],
    Config: { ...config, Labels: ownFree },
    // The twin's binds name the volumes twinlayer made for the primary's anonymous ones (a null Binds stays null).
    HostConfig: { ...hostConfig, Binds: anonymousBindsOut(hostConfig['Binds']) },
    Mounts: i.Mounts.map((m) => mountView(m, dataRoot)).sort((a, b) => String(a['Destination']).localeCompare(String(b['Destination']))),
  };
}

/** What the container sees inside: the settings in effect, not only recorded. */
const PROBE = [
  'cat /proc/sys/net/ipv4/ip_forward',
  "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status",
  'ls -l /dev/net/tun | cut -c1',
  // The limits of the container's own process (docker-init, whose child inherits them), not of this exec'd shell: runc
  // before 1.1.13 sets an exec'd process's rlimits with prlimit while its Go runtime may be raising the soft
  // RLIMIT_NOFILE to the hard limit, so `ulimit -n` here is sometimes the hard limit (opencontainers/runc#4195).
  "sed -n -e 's/^Max processes  *\\([0-9]*\\)  *\\([0-9]*\\).*/nproc \\1 \\2/p' -e 's/^Max open files  *\\([0-9]*\\)  *\\([0-9]*\\).*/nofile \\1 \\2/p' /proc/1/limits",
  'cat /etc/resolv.conf',
  'grep gw.example /etc/hosts',
  'hostname; cat /proc/sys/kernel/domainname',
  "mount | grep -E ' on /(run|scratch|srv/bind|etc/svc|certs|var/lib/misc|anon) ' | awk '{print $3, $5, $6}' | sort",
  "tr '\\0' ' ' < /proc/1/cmdline; echo",
  'id',
  'touch /probe 2>&1 || true',
  'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus',
  // Addresses, not interface names: Docker attaches a stopped container's networks in no fixed order at start.
  "ip -o -4 addr show | awk '{print $4}' | sort",
  'pwd; echo "A=$A"',
].join('; echo ---; ');

describe('spec round trip: the twin is the same container', { timeout: 600_000 }, () => {
  let lab: Lab | undefined;
  let a: Engine;
  let b: Engine;
  let rtA: DockerRuntime;
  let rtB: DockerRuntime;
  let bindRoot: string;
  let policy: TwinPolicy;
  const specs = new Map<string, TwinSpec>();

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the lab needs root (network namespaces, dockerd)');
    lab = await createLab({ hosts: ['primary', 'standby'] });
    await lab.startEngines();
    a = lab.hosts[0]!.engine!;
    b = lab.hosts[1]!.engine!;
    rtA = new DockerRuntime({ socketPath: a.socketPath, mountInfoPath: a.mountInfoPath });
    rtB = new DockerRuntime({ socketPath: b.socketPath, mountInfoPath: b.mountInfoPath });
    await importBusyboxImage(a.socketPath, TAG);
    await copyImage(a.socketPath, b.socketPath, TAG);
    // The same networks on both hosts (made by the operator of each host): bridges inside each host's namespace.
    for (const e of [a, b]) {
      await dockerCli(e, ['network', 'create', '--subnet', '172.30.1.0/24', 'svcnet']);
      await dockerCli(e, ['network', 'create', '--subnet', '172.30.2.0/24', 'othernet']);
    }
    // Bind sources exist on both hosts (here: the same directory, both engines share the machine's filesystem).
    bindRoot = join(lab.dir, 'binds');
    await mkdir(join(bindRoot, 'data'), { recursive: true });
    await mkdir(join(bindRoot, 'conf'), { recursive: true });
    await writeFile(join(bindRoot, 'conf', 'svc.conf'), 'port=53\n');
    policy = {
      ...DEFAULT_TWIN_POLICY, allowPrivileged: true, allowedBindRoots: [bindRoot], allowedHostNamespaces: [...HOST_NAMESPACES], allowSecurityOpts: true,
      allowedHostIps: ['127.0.0.1'],
    };

    await dockerCli(a, ['run', '-d', '-i', '-t', '--name', 'full', '-l', 'twinlayer.enable=true', '-l', 'com.example.role=dns', '-e', 'A=1',
      '--hostname', 'svc1', '--domainname', 'example.test', '--workdir', '/srv', '--user', '0:0', '--group-add', '10', '--read-only',
      '--cap-add', 'NET_ADMIN', '--cap-add', 'NET_RAW', '--cap-drop', 'MKNOD', '--cap-drop', 'AUDIT_WRITE',
      '--device', '/dev/net/tun:/dev/net/tun:rwm',
      '--sysctl', 'net.ipv4.ip_forward=1', '--sysctl', 'net.ipv4.conf.all.rp_filter=2',
      '--security-opt', 'no-new-privileges', '--security-opt', 'seccomp=unconfined',
      '--ulimit', 'nofile=1024:2048', '--ulimit', 'nproc=512:1024',
      '--memory', '64m', '--memory-reservation', '32m', '--memory-swap', '128m', '--cpu-shares', '512', '--cpus', '0.5', '--cpuset-cpus', '0',
      '--pids-limit', '100', '--oom-score-adj', '100', '--shm-size', '32m',
      '--tmpfs', '/run:rw,size=16m', '--mount', 'type=tmpfs,target=/scratch,tmpfs-size=1048576',
      '--init', '--stop-signal', 'SIGINT', '--stop-timeout', '7',
      '--health-cmd', 'true', '--health-interval', '5s', '--health-timeout', '2s', '--health-retries', '2', '--health-start-period', '1s',
      '--log-driver', 'json-file', '--log-opt', 'max-size=1m', '--log-opt', 'max-file=2',
      '--add-host', 'gw.example:192.0.2.1', '--dns', '192.0.2.53', '--dns-search', 'example.test', '--dns-option', 'ndots:2',
      '--network', 'svcnet', '--ip', '172.30.1.10', '--network-alias', 'dns1',
      '-p', '127.0.0.1:5353:53/udp', '--expose', '8080',
      '-v', `${bindRoot}/data:/srv/bind:ro`, '-v', 'leases:/var/lib/misc', '-v', '/anon',
      '--mount', 'type=volume,source=certs,target=/certs', '--mount', `type=bind,source=${bindRoot}/conf,target=/etc/svc,readonly`,
      '--restart', 'unless-stopped',
      TAG, 'sleep', '3600']);
    await dockerCli(a, ['network', 'connect', '--ip', '172.30.2.9', '--alias', 'fw', 'othernet', 'full']);
    // Created, not started: a privileged container asks runc for every capability, and this machine's bounding set
    // lacks CAP_SYS_RESOURCE. Its inspect is what is compared (the twin is created, not started, either way).
    await dockerCli(a, ['create', '--name', 'priv', '-l', 'twinlayer.enable=true', '--privileged', '--network', 'host', '--pid', 'host',
      '--ipc', 'host', '--uts', 'host', '--userns', 'host', '--cgroupns', 'private', '--device-cgroup-rule', 'c 10:200 rwm',
      '--log-driver', 'local', '--restart', 'always', TAG, 'sleep', '3600']);
    // Through the API, capabilities keep the spelling they were given (the CLI adds CAP_ before it sends them): one
    // without the prefix, one with it.
    await new Docker({ socketPath: a.socketPath }).createContainer({
      // A hostname of its own (not the id's) and no PortBindings: its inspect shows null where the CLI's shows {}.
      name: 'apicaps', Image: TAG, Cmd: ['sleep', '3600'], Labels: { 'twinlayer.enable': 'true' }, Hostname: 'apicaps',
      HostConfig: { NetworkMode: 'none', CapAdd: ['NET_ADMIN', 'CAP_NET_RAW'], CapDrop: ['MKNOD', 'CAP_AUDIT_WRITE'] },
    });
    assert.deepEqual((await inspect(a, 'apicaps')).HostConfig['CapAdd'], ['NET_ADMIN', 'CAP_NET_RAW'], 'the primary shows the capabilities as given');
    assert.equal((await inspect(a, 'apicaps')).HostConfig['PortBindings'], null, 'created through the API without PortBindings');
    // The spec as the standby reads it from the bucket: JSON, parsed by the schema.
    for (const name of ['full', 'priv', 'apicaps']) specs.set(name, twinSpecSchema.parse(JSON.parse(JSON.stringify(await rtA.captureSpec(name)))));
  });

  after(async () => {
    await lab?.destroy();
  });

  for (const name of ['full', 'priv', 'apicaps']) {
    it(`${name}: the created twin's docker inspect equals the primary's in every field that defines how it runs`, async () => {
      const spec = specs.get(name)!;
      assert.deepEqual(spec.unsupported, [], 'the primary has nothing a twin cannot be created with');
      const twin = await rtB.ensureTwin(spec, { group: 'g', trusted: true, policy });
      assert.equal(twin.state, 'stopped');
      const primary = await inspect(a, name);
      const created = await inspect(b, name);
      assert.deepEqual(comparable(created, b.dataRoot), comparable(primary, a.dataRoot));
      assert.notEqual(created.Id, primary.Id);
      assert.deepEqual(created.HostConfig['RestartPolicy'], { Name: 'no', MaximumRetryCount: 0 }, 'a twin never restarts by itself');
      assert.equal(created.Config['Image'], spec.imageId, 'created by image id');
      assert.equal((created.Config['Labels'] as Record<string, string>)['twinlayer.twin'], 'true');
    });
  }

  it('full: started, the twin is attached to the same networks with the same addresses and sees the same settings inside', async () => {
    const [started] = await rtB.startContainers(['full'], 1);
    assert.equal(started?.ok, true, started?.error);
    const primary = await inspect(a, 'full');
    const twin = await inspect(b, 'full');
    const networks = (i: Inspect): Record<string, unknown> => Object.fromEntries(Object.entries(i.NetworkSettings.Networks).map(([n, e]) => [n, endpointView(e, i.Id)]));
    assert.deepEqual(networks(twin), networks(primary));
    assert.equal(primary.NetworkSettings.Networks['svcnet']?.['IPAddress'], '172.30.1.10');
    assert.deepEqual(twin.NetworkSettings.Ports, primary.NetworkSettings.Ports);
    const probe = async (e: Engine): Promise<string> => dockerCli(e, ['exec', 'full', 'sh', '-c', PROBE]);
    const [seenA, seenB] = [await probe(a), await probe(b)];
    assert.equal(seenB, seenA);
    // Not only equal: in effect.
    const parts = seenA.split('---\n');
    assert.equal(parts[0], '1\n', 'ip_forward');
    assert.match(parts[1] ?? '', /NoNewPrivs:\s+1[\s\S]*Seccomp:\s+0/);
    assert.equal(parts[2], 'c\n', '/dev/net/tun');
    assert.equal(parts[3], 'nproc 512 1024\nnofile 1024 2048\n', '--ulimit nproc=512:1024, nofile=1024:2048');
    // On a user-defined network Docker's embedded DNS (127.0.0.11) answers and forwards to the --dns servers.
    assert.equal(parts[4], 'search example.test\nnameserver 127.0.0.11\noptions ndots:2\n');
    assert.match(parts[6] ?? '', /^svc1\nexample\.test\n$/);
    assert.match(parts[7] ?? '', /\/run tmpfs[\s\S]*\/scratch tmpfs[\s\S]*\/srv\/bind \S+ \(ro/);
    assert.match(parts[8] ?? '', /^\/sbin\/docker-init -- sleep 3600/);
    assert.match(parts[10] ?? '', /Read-only file system/);
    assert.equal(parts[11], '67108864\n100\n512\n0\n');
    assert.equal(parts[12], '127.0.0.1/8\n172.30.1.10/24\n172.30.2.9/24\n');
    assert.equal(parts[13], '/srv\nA=1\n');
  });

  describe('refusals: reported, and no twin created', () => {
    /** Refused (the spec, the trust, the policy), or not created while this host lacks something (`lacking`). */
    async function refused(spec: TwinSpec, trust: { trusted: boolean; policy: TwinPolicy }, lacking = false): Promise<string[]> {
      const err = await rtB.ensureTwin(spec, { group: 'g', ...trust }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof (lacking ? TwinHostNotReadyError : TwinSpecRefusedError), `refused: ${String(err)}`);
      assert.equal(err.context.container, spec.name);
      assert.deepEqual(await rtB.twinState(spec.name), { state: 'absent' }, 'no twin');
      const all = await dockerCli(b, ['ps', '-a', '--format', '{{.Names}}']);
      assert.ok(!all.split('\n').includes(spec.name), all);
      return err.problems;
    }
    const renamed = (name: string, patch: Partial<TwinSpec> = {}): TwinSpec => ({ ...specs.get('full')!, name, ...patch });

    it('an untrusted spec with privileged fields: every field named', async () => {
      const problems = await refused(renamed('r-untrusted'), { trusted: false, policy });
      assert.equal(problems.length, 1, problems.join('\n'));
      for (const field of ['HostConfig.CapAdd NET_ADMIN', 'HostConfig.CapAdd NET_RAW', 'HostConfig.Devices /dev/net/tun', 'HostConfig.SecurityOpt seccomp=unconfined',
        `HostConfig.Binds/Mounts ${bindRoot}/data`, `HostConfig.Binds/Mounts ${bindRoot}/conf`, 'HostConfig.Sysctls net.ipv4.ip_forward']) {
        assert.ok(problems[0]?.includes(field), `names ${field}: ${problems[0]}`);
      }
      const priv = await refused({ ...specs.get('priv')!, name: 'r-untrusted-priv' }, { trusted: false, policy });
      for (const field of ['HostConfig.Privileged true', 'HostConfig.DeviceCgroupRules c 10:200 rwm', 'NetworkMode host', 'HostConfig.PidMode host', 'HostConfig.IpcMode host', 'HostConfig.UTSMode host', 'HostConfig.UsernsMode host']) {
        assert.ok(priv[0]?.includes(field), `names ${field}: ${priv[0]}`);
      }
    });

    it('the host policy refuses a trusted spec\'s bind mounts, security options and privileged mode, naming field and setting', async () => {
      const problems = await refused(renamed('r-policy'), { trusted: true, policy: DEFAULT_TWIN_POLICY });
      assert.deepEqual(problems, [
        `the host policy refuses HostConfig.SecurityOpt seccomp=unconfined (allowSecurityOpts: false)`,
        `the host policy refuses HostConfig.Binds/Mounts ${bindRoot}/data (allowedBindRoots: none)`,
        `the host policy refuses HostConfig.Binds/Mounts ${bindRoot}/conf (allowedBindRoots: none)`,
        'the host policy refuses HostConfig.PortBindings 53/udp -> 127.0.0.1:5353 (allowedHostIps: none)',
      ]);
      const priv = await refused({ ...specs.get('priv')!, name: 'r-policy-priv' }, { trusted: true, policy: DEFAULT_TWIN_POLICY });
      assert.ok(priv.some((p) => p.includes('HostConfig.Privileged true (allowPrivileged: false)')), priv.join('\n'));
      assert.ok(priv.some((p) => p.includes('HostConfig.PidMode host (allowedHostNamespaces: network)')), priv.join('\n'));
    });

    it('what the standby lacks, none created meanwhile: a bind source, a network, a device, a subnet that holds the static address', async () => {
      const full = specs.get('full')!;
      const binds = (full.hostConfig?.Binds ?? []).map((bind) => bind.replace(`${bindRoot}/data:`, `${bindRoot}/gone:`));
      assert.deepEqual(await refused(renamed('r-bind', { hostConfig: { ...full.hostConfig, Binds: binds } }), { trusted: true, policy }, true), [
        `bind-mount source ${bindRoot}/gone does not exist on this host (ENOENT)`,
      ]);
      const ghost = { ...full.networks, ghostnet: { IPAMConfig: null, Aliases: null, DriverOpts: null } };
      assert.deepEqual(await refused(renamed('r-net', { networks: ghost }), { trusted: true, policy }, true), ['network ghostnet does not exist on this host']);
      const devices = [{ PathOnHost: '/dev/twl-absent', PathInContainer: '/dev/x', CgroupPermissions: 'rwm' }];
      assert.deepEqual(await refused(renamed('r-dev', { hostConfig: { ...full.hostConfig, Devices: devices } }), { trusted: true, policy: { ...policy, allowedDevices: ['/dev/twl-absent'] } }, true), [
        'device /dev/twl-absent does not exist on this host (ENOENT)',
      ]);
      const moved = { ...full.networks, svcnet: { IPAMConfig: { IPv4Address: '172.30.9.10' }, Aliases: ['dns1'], DriverOpts: null } };
      assert.deepEqual(await refused(renamed('r-subnet', { networks: moved }), { trusted: true, policy }, true), [
        'network svcnet on this host (172.30.1.0/24) does not hold the static address 172.30.9.10',
      ]);
    });
  });
});

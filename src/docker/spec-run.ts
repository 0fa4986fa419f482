// How a container runs, beyond its image, command and ports: the settings of docker inspect's Config and HostConfig
// that a twin must be created with, kept under Docker's own names so the spec, the create request and `docker
// inspect` read alike on both hosts. Bounded and strict: a spec is read from the bucket (THREATS.md); a key this
// schema does not know is refused, never dropped.
import { posix } from 'node:path';
import { z } from 'zod';

const MAX_ITEMS = 256;
const noNul = (s: string): boolean => !s.includes('\0');
const text = (max = 4096) => z.string().max(max).refine(noNul, 'no NUL bytes');
const int = z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const list = <T extends z.ZodType>(item: T) => z.array(item).max(MAX_ITEMS);
const dict = <T extends z.ZodType>(value: T) => z.record(text(256), value).refine((r) => Object.keys(r).length <= MAX_ITEMS, `at most ${MAX_ITEMS} entries`);

/** Why `p` is not a normalized absolute path (no `..`, no `//`, no trailing slash), or null. */
export function absolutePathProblem(p: string): string | null {
  if (!p.startsWith('/') || p.includes('\0')) return `${JSON.stringify(p.slice(0, 80))} is not an absolute path`;
  if (p !== '/' && (posix.normalize(p) !== p || p.endsWith('/'))) return `${JSON.stringify(p.slice(0, 80))} is not a normalized path`;
  if (p.split('/').includes('..')) return `${JSON.stringify(p.slice(0, 80))} has a .. component`;
  return null;
}
const absPath = text().superRefine((p, ctx) => {
  const problem = absolutePathProblem(p);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});

// Docker's own charset for volume names.
const volumeName = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;
const BIND_OPTIONS = new Set(['ro', 'rw', 'z', 'Z', 'nocopy', 'private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'consistent', 'cached', 'delegated']);

/** One entry of HostConfig.Binds, `source:target[:options]`: a bind mount when the source is absolute, else a named volume. */
export interface BindEntry {
  kind: 'bind' | 'volume';
  source: string;
  target: string;
  options: string[];
}

/** Parses `source:target[:options]`; a string describing the problem when it is not one Docker would accept as we do. */
export function parseBind(entry: string): BindEntry | string {
  const parts = entry.split(':');
  if (parts.length < 2 || parts.length > 3) return `bind ${JSON.stringify(entry.slice(0, 80))} is not source:target[:options]`;
  const [source = '', target = '', opts] = parts;
  const options = opts === undefined || opts === '' ? [] : opts.split(',');
  const bad = options.find((o) => !BIND_OPTIONS.has(o));
  if (bad !== undefined) return `bind ${JSON.stringify(entry.slice(0, 80))} has an unknown option ${JSON.stringify(bad.slice(0, 40))}`;
  const targetProblem = absolutePathProblem(target);
  if (targetProblem !== null) return `bind target ${targetProblem}`;
  if (source.startsWith('/')) {
    const sourceProblem = absolutePathProblem(source);
    return sourceProblem === null ? { kind: 'bind', source, target, options } : `bind source ${sourceProblem}`;
  }
  if (!volumeName.test(source)) return `bind ${JSON.stringify(entry.slice(0, 80))}: ${JSON.stringify(source.slice(0, 80))} is neither an absolute path nor a volume name`;
  return { kind: 'volume', source, target, options };
}

const bindString = text().superRefine((b, ctx) => {
  const parsed = parseBind(b);
  if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
});

const mountSchema = z.strictObject({
  Type: z.enum(['bind', 'volume', 'tmpfs']),
  Source: text().exactOptional(),
  Target: absPath,
  ReadOnly: z.boolean().exactOptional(),
  Consistency: z.enum(['default', 'consistent', 'cached', 'delegated']).exactOptional(),
  BindOptions: z.strictObject({
    Propagation: z.enum(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave']).exactOptional(),
    NonRecursive: z.boolean().exactOptional(),
  }).exactOptional(),
  VolumeOptions: z.strictObject({
    NoCopy: z.boolean().exactOptional(),
    Labels: dict(text()).nullable().exactOptional(),
    // A local volume with options (type=none,o=bind,device=/etc) is a bind mount of any host path in disguise, and
    // another driver's volume is not on the standby: only plain local volumes are recreated.
    DriverConfig: z.strictObject({
      Name: z.enum(['', 'local'], { message: 'only the local volume driver is recreated on a twin' }).exactOptional(),
      Options: dict(text()).nullable().exactOptional().refine((o) => o === undefined || o === null || Object.keys(o).length === 0, 'volume driver options are not recreated on a twin (a local volume with options can bind any host path)'),
    }).exactOptional(),
  }).exactOptional(),
  TmpfsOptions: z.strictObject({ SizeBytes: count.exactOptional(), Mode: count.max(0o7777).exactOptional() }).exactOptional(),
}).superRefine((m, ctx) => {
  if (m.Type === 'bind') {
    const problem = absolutePathProblem(m.Source ?? '');
    if (problem !== null) ctx.addIssue({ code: 'custom', message: `bind mount source ${problem}` });
  }
  if (m.Type === 'volume' && m.Source !== undefined && m.Source !== '' && !volumeName.test(m.Source)) {
    ctx.addIssue({ code: 'custom', message: `volume ${JSON.stringify(m.Source.slice(0, 80))} is not a Docker volume name` });
  }
  if (m.Type === 'tmpfs' && m.Source !== undefined && m.Source !== '') ctx.addIssue({ code: 'custom', message: 'a tmpfs mount has no source' });
});
export type MountSpec = z.infer<typeof mountSchema>;

/** pid, ipc, uts and user namespace modes: Docker's own and `host`; `container:<x>` would share whatever container has
 *  that name on the standby (the same reason networkMode refuses it). */
const namespaceMode = (allowed: readonly string[]) => text(300).superRefine((mode, ctx) => {
  if (allowed.includes(mode)) return;
  const shown = JSON.stringify(mode.slice(0, 80));
  ctx.addIssue({
    code: 'custom',
    message: mode.startsWith('container:')
      ? `${shown} shares another container's namespace, which the standby cannot recreate (it would join whatever container has that name there)`
      : `${shown} is not one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`,
  });
});

const deviceSchema = z.strictObject({ PathOnHost: absPath, PathInContainer: absPath, CgroupPermissions: z.string().regex(/^[rwm]{0,3}$/, 'r, w and m') });
const weightDevice = z.strictObject({ Path: absPath, Weight: count.max(1000) });
const throttleDevice = z.strictObject({ Path: absPath, Rate: count });
const ulimitSchema = z.strictObject({ Name: z.string().regex(/^[a-z]{1,32}$/, 'an rlimit name'), Soft: int, Hard: int });
const durationNs = count;

/** HostConfig keys a twin is created with, each with its bounds. NetworkMode, PortBindings and RestartPolicy are the
 *  spec's own fields. */
const hostConfigShape = {
  Binds: list(bindString).nullable(),
  LogConfig: z.strictObject({ Type: text(64), Config: dict(text()).nullable().exactOptional() }),
  AutoRemove: z.boolean(),
  CapAdd: list(z.string().regex(/^[A-Za-z_]{1,64}$/, 'a capability name')).nullable(),
  CapDrop: list(z.string().regex(/^[A-Za-z_]{1,64}$/, 'a capability name')).nullable(),
  CgroupnsMode: z.enum(['', 'host', 'private']),
  Dns: list(text(64)).nullable(),
  DnsOptions: list(text(256)).nullable(),
  DnsSearch: list(text(256)).nullable(),
  ExtraHosts: list(text(512)).nullable(),
  GroupAdd: list(text(64)).nullable(),
  IpcMode: namespaceMode(['', 'none', 'private', 'shareable', 'host']),
  Cgroup: z.literal(''),
  OomScoreAdj: z.number().int().min(-1000).max(1000),
  PidMode: namespaceMode(['', 'host']),
  Privileged: z.boolean(),
  PublishAllPorts: z.boolean(),
  ReadonlyRootfs: z.boolean(),
  // A seccomp profile is given inline (`seccomp=<json>`): up to 512 KiB.
  SecurityOpt: list(text(512 * 1024)).nullable(),
  Tmpfs: dict(text(1024)).nullable().refine((t) => t === null || Object.keys(t).every((p) => absolutePathProblem(p) === null), 'tmpfs targets are absolute paths'),
  UTSMode: namespaceMode(['', 'host']),
  UsernsMode: namespaceMode(['', 'host']),
  ShmSize: count,
  Sysctls: dict(text(1024)).nullable().refine((s) => s === null || Object.keys(s).every((k) => /^[a-z0-9_]+(\.[a-zA-Z0-9_*-]+)+$/.test(k)), 'sysctl names'),
  Runtime: z.string().regex(/^[a-zA-Z0-9_.-]{0,64}$/, 'a runtime name'),
  ConsoleSize: z.tuple([count.max(65535), count.max(65535)]).nullable(),
  Isolation: z.enum(['', 'default']),
  CpuShares: count,
  Memory: count,
  NanoCpus: count,
  CgroupParent: text(1024),
  BlkioWeight: count.max(1000),
  BlkioWeightDevice: list(weightDevice).nullable(),
  BlkioDeviceReadBps: list(throttleDevice).nullable(),
  BlkioDeviceWriteBps: list(throttleDevice).nullable(),
  BlkioDeviceReadIOps: list(throttleDevice).nullable(),
  BlkioDeviceWriteIOps: list(throttleDevice).nullable(),
  CpuPeriod: count,
  CpuQuota: int,
  CpuRealtimePeriod: count,
  CpuRealtimeRuntime: count,
  CpusetCpus: z.string().regex(/^[0-9,-]{0,256}$/, 'a cpu list'),
  CpusetMems: z.string().regex(/^[0-9,-]{0,256}$/, 'a node list'),
  Devices: list(deviceSchema).nullable(),
  DeviceCgroupRules: list(text(128)).nullable(),
  KernelMemory: count,
  KernelMemoryTCP: count,
  MemoryReservation: count,
  MemorySwap: int,
  MemorySwappiness: z.number().int().min(-1).max(100).nullable(),
  OomKillDisable: z.boolean().nullable(),
  PidsLimit: int.nullable(),
  Ulimits: list(ulimitSchema).nullable(),
  CpuCount: count,
  CpuPercent: count.max(100),
  IOMaximumIOps: count,
  IOMaximumBandwidth: count,
  Mounts: list(mountSchema).nullable(),
  Init: z.boolean().nullable(),
};
export type HostConfigKey = keyof typeof hostConfigShape;
export const HOST_CONFIG_KEYS = Object.keys(hostConfigShape) as HostConfigKey[];
export const hostConfigSchema = z.strictObject(hostConfigShape).partial();
export type RunHostConfig = z.infer<typeof hostConfigSchema>;

const healthcheckSchema = z.strictObject({
  Test: list(text()).nullable().exactOptional(),
  Interval: durationNs.exactOptional(),
  Timeout: durationNs.exactOptional(),
  StartPeriod: durationNs.exactOptional(),
  Retries: count.max(1_000_000).exactOptional(),
});

/** Config keys a twin is created with (Hostname, User, Env, Cmd, Entrypoint, WorkingDir, Labels, ExposedPorts and the
 *  image are the spec's own fields). */
const configShape = {
  Domainname: text(253),
  AttachStdin: z.boolean(),
  AttachStdout: z.boolean(),
  AttachStderr: z.boolean(),
  Tty: z.boolean(),
  OpenStdin: z.boolean(),
  StdinOnce: z.boolean(),
  Healthcheck: healthcheckSchema.nullable(),
  Volumes: dict(z.strictObject({})).nullable().refine((v) => v === null || Object.keys(v).every((p) => absolutePathProblem(p) === null), 'volume targets are absolute paths'),
  StopSignal: z.string().regex(/^(SIG[A-Z0-9+-]{1,16}|[A-Z0-9+-]{1,16}|\d{1,2})$/, 'a signal name or number'),
  StopTimeout: z.number().int().min(-1).max(86_400).nullable(),
  MacAddress: z.string().regex(/^([0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5})?$/, 'a MAC address'),
  NetworkDisabled: z.boolean(),
};
export type ConfigKey = keyof typeof configShape;
export const CONFIG_KEYS = Object.keys(configShape) as ConfigKey[];
export const configSchema = z.strictObject(configShape).partial();
export type RunConfig = z.infer<typeof configSchema>;

/** What was set explicitly on one network the container is attached to. */
export const endpointSchema = z.strictObject({
  IPAMConfig: z.strictObject({
    IPv4Address: z.ipv4().or(z.literal('')).exactOptional(),
    IPv6Address: z.ipv6().or(z.literal('')).exactOptional(),
    LinkLocalIPs: list(z.ipv4().or(z.ipv6())).nullable().exactOptional(),
  }).nullable(),
  Aliases: list(z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, 'a network alias')).nullable(),
  DriverOpts: dict(text()).nullable(),
});
export type EndpointSpec = z.infer<typeof endpointSchema>;

// Keys of inspect that are not carried, and why: the spec's own fields, what the twin sets itself, what Docker
// derives on create from the carried keys (MaskedPaths/ReadonlyPaths from Privileged and SecurityOpt), what only the
// client uses, and what comes with the image. Any other key with a value is recorded as not recreated.
const HOST_CONFIG_NOT_CARRIED = new Set(['NetworkMode', 'PortBindings', 'RestartPolicy', 'MaskedPaths', 'ReadonlyPaths', 'ContainerIDFile']);
const CONFIG_NOT_CARRIED = new Set(['Hostname', 'User', 'ExposedPorts', 'Env', 'Cmd', 'Image', 'WorkingDir', 'Entrypoint', 'Labels', 'OnBuild', 'Shell', 'ArgsEscaped']);

function isEmpty(v: unknown): boolean {
  if (v === null || v === undefined || v === '' || v === false || v === 0) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v).length === 0;
  return false;
}

function shown(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

export interface RunSettings {
  config: RunConfig;
  hostConfig: RunHostConfig;
  networks: Record<string, EndpointSpec>;
  unsupported: string[];
}

/** Pure: the run settings of an inspected container. A value the spec cannot carry, or a key it does not know with a
 *  value set, goes to `unsupported` (a standby refuses such a spec rather than create a twin that differs). */
export function runSettingsFromInspect(raw: {
  id: string;
  hostname: string | undefined;
  config: Record<string, unknown>;
  hostConfig: Record<string, unknown>;
  networks: Record<string, unknown> | null | undefined;
}): RunSettings {
  const unsupported: string[] = [];
  const pick = <K extends string>(where: string, source: Record<string, unknown>, shape: Record<K, z.ZodType>, notCarried: Set<string>): Partial<Record<K, unknown>> => {
    const out: Partial<Record<K, unknown>> = {};
    for (const [key, value] of Object.entries(source)) {
      if (Object.hasOwn(shape, key)) {
        const parsed = shape[key as K].safeParse(value);
        if (parsed.success) out[key as K] = parsed.data;
        else unsupported.push(`${where}.${key} ${shown(value)}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      } else if (!notCarried.has(key) && !isEmpty(value)) {
        unsupported.push(`${where}.${key} is set (${shown(value)}) and is not recreated on a twin`);
      }
    }
    return out;
  };
  const hostConfig = pick('HostConfig', raw.hostConfig, hostConfigShape, HOST_CONFIG_NOT_CARRIED) as RunHostConfig;
  const config = pick('Config', raw.config, configShape, CONFIG_NOT_CARRIED) as RunConfig;
  const networks: Record<string, EndpointSpec> = {};
  for (const [name, value] of Object.entries(raw.networks ?? {})) {
    // host and none are network modes, not attachments: the mode recreates them.
    if (name === 'host' || name === 'none') continue;
    const endpoint = endpointFromInspect(value, raw.id, raw.hostname);
    if (typeof endpoint === 'string') unsupported.push(`NetworkSettings.Networks.${name}: ${endpoint}`);
    else networks[name] = endpoint;
  }
  return { config, hostConfig, networks, unsupported };
}

const inspectEndpoint = z.looseObject({
  IPAMConfig: z.looseObject({}).nullable().optional(),
  Aliases: z.array(z.string()).nullable().optional(),
  Links: z.array(z.string()).nullable().optional(),
  DriverOpts: z.record(z.string(), z.string()).nullable().optional(),
});

/** The explicit part of one network attachment: Docker adds the container's short id and hostname to its aliases
 *  when it connects it (the twin gets its own), and the addresses it assigned are not IPAMConfig. */
function endpointFromInspect(value: unknown, id: string, hostname: string | undefined): EndpointSpec | string {
  const parsed = inspectEndpoint.safeParse(value);
  if (!parsed.success) return parsed.error.issues[0]?.message ?? 'invalid';
  const e = parsed.data;
  if ((e.Links ?? []).length > 0) return `links ${shown(e.Links)} are not recreated on a twin`;
  const derived = new Set([id.slice(0, 12), hostname ?? '']);
  const aliases = e.Aliases === null || e.Aliases === undefined ? null : e.Aliases.filter((a) => !derived.has(a));
  const candidate = { IPAMConfig: e.IPAMConfig ?? null, Aliases: aliases, DriverOpts: e.DriverOpts ?? null };
  const endpoint = endpointSchema.safeParse(candidate);
  return endpoint.success ? endpoint.data : endpoint.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

// The twin spec: what the standby needs from the primary's `docker inspect` to create an equivalent stopped twin.
import { z } from 'zod';
import type { ContainerCreateOptions } from 'dockerode';
import { createHash } from 'node:crypto';
import { GROUP_LABEL, OWN_LABELS, SPEC_LABEL, TWIN_LABEL } from './labels.js';
import type { ContainerInspect } from './schemas.js';
import { configSchema, endpointSchema, hostConfigSchema, runSettingsFromInspect } from './spec-run.js';
import type { EndpointSpec, RunConfig, RunHostConfig } from './spec-run.js';
import { unreplicatedVolumeSchema, volumesFromInspect, volumeSpecSchema, type UnreplicatedVolume, type VolumeSpec } from './volumes.js';

export interface PortBinding {
  hostIp: string;
  hostPort: string;
}

/** Docker's restart policies; a twin runs with `no` until it is promoted, then gets the primary's back. */
export type RestartPolicyName = 'no' | 'always' | 'unless-stopped' | 'on-failure';
export interface RestartPolicy {
  name: RestartPolicyName;
  /** Only for on-failure; 0 = unlimited. */
  maximumRetryCount: number;
}

export const NO_RESTART: RestartPolicy = Object.freeze({ name: 'no', maximumRetryCount: 0 });

export interface TwinSpec {
  version: 1;
  name: string;
  /** The image reference the primary was created from (informational; the twin is created by imageId). */
  image: string;
  imageId: string;
  cmd: string[] | null;
  entrypoint: string[] | null;
  env: string[];
  labels: Record<string, string>;
  workingDir: string;
  user: string;
  exposedPorts: string[];
  portBindings: Record<string, PortBinding[]>;
  /** The primary's HostConfig.PortBindings was null (a container created through the API without it), not `{}` (the
   *  CLI): kept so the twin's inspect shows the same. Absent in specs captured before it was recorded: `{}`. */
  portBindingsNull?: true;
  networkMode: string;
  /** The primary's restart policy, restored on promotion. Absent in specs captured before it was recorded: `no`. */
  restartPolicy?: RestartPolicy;
  /** Only when set explicitly on the primary (Docker's default is the short container id). */
  hostname?: string;
  /** The rest of Config and HostConfig that defines how the container runs, under Docker's names (spec-run.ts):
   *  capabilities, devices, sysctls, security options, ulimits, resources, mounts, tmpfs, init, stop signal and
   *  timeout, healthcheck, log config, extra hosts, DNS. Absent in specs captured before they were recorded. */
  config?: RunConfig;
  hostConfig?: RunHostConfig;
  /** The networks the container is attached to (beyond host/none), with what was set on each: static addresses,
   *  aliases, driver options. The one named by networkMode is given at create, the others connected after. */
  networks?: Record<string, EndpointSpec>;
  /** The volumes replicated with the container (local driver), by the name the twin mounts at each destination.
   *  Absent in specs captured before volumes were replicated. */
  volumes?: VolumeSpec[];
  /** The primary's volumes that are not replicated (volumes.ts): a standby creates the twin without their data only
   *  when its policy allows (twin-policy.ts). Absent when there are none. */
  unreplicatedVolumes?: UnreplicatedVolume[];
  /** What the primary's container has that a twin cannot be created with; a standby refuses a spec listing any. */
  unsupported?: string[];
  capturedAt: string;
}

// Container names as Docker accepts them; the name also becomes a bucket key segment elsewhere.
const containerName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$/, 'a Docker container name');

/** Network modes a twin may be created with: Docker's own modes and user-defined networks, named with Docker's
 *  name charset (or by id). `container:<x>` would join whatever container has that name on the standby, and
 *  `ns:<path>` any network namespace of the standby host (`ns:/proc/1/ns/net` is the host's): neither is the
 *  primary's network, and a spec is read from the bucket. */
export const NETWORK_MODES = ['none', 'host', 'bridge', 'default'] as const;
const networkName = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

/** Why a spec's networkMode cannot be recreated on the standby, or null. */
export function networkModeProblem(mode: string): string | null {
  if ((NETWORK_MODES as readonly string[]).includes(mode) || networkName.test(mode)) return null;
  const shown = JSON.stringify(mode.slice(0, 80));
  if (mode.startsWith('container:')) return `networkMode ${shown} joins another container's network namespace, which the standby cannot recreate (it would join whatever container has that name there)`;
  if (mode.startsWith('ns:')) return `networkMode ${shown} joins a network namespace of the standby host by path; twins are not created in one`;
  return `networkMode ${shown} is not none, host, bridge, default or a Docker network name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)`;
}

export const twinSpecSchema: z.ZodType<TwinSpec> = z.object({
  version: z.literal(1),
  name: containerName,
  image: z.string().min(1),
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'sha256:<64 hex>'),
  cmd: z.array(z.string()).nullable(),
  entrypoint: z.array(z.string()).nullable(),
  env: z.array(z.string()),
  labels: z.record(z.string(), z.string()),
  workingDir: z.string(),
  user: z.string(),
  exposedPorts: z.array(z.string().regex(/^\d{1,5}(\/(tcp|udp|sctp))?$/, 'port/proto')),
  portBindings: z.record(z.string(), z.array(z.object({ hostIp: z.string(), hostPort: z.string() }))),
  portBindingsNull: z.literal(true).exactOptional(),
  networkMode: z.string().superRefine((mode, ctx) => {
    const problem = networkModeProblem(mode);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  }),
  restartPolicy: z.strictObject({
    name: z.enum(['no', 'always', 'unless-stopped', 'on-failure']),
    maximumRetryCount: z.number().int().min(0).max(1_000_000),
  }).exactOptional(),
  hostname: z.string().min(1).max(253).exactOptional(),
  config: configSchema.exactOptional(),
  hostConfig: hostConfigSchema.exactOptional(),
  networks: z.record(z.string().regex(networkName, 'a Docker network name'), endpointSchema)
    .refine((n) => Object.keys(n).length <= 64, 'at most 64 networks').exactOptional(),
  volumes: z.array(volumeSpecSchema).max(256).refine((v) => new Set(v.map((x) => x.name)).size === v.length && new Set(v.map((x) => x.destination)).size === v.length, 'volume names and destinations are unique').exactOptional(),
  unreplicatedVolumes: z.array(unreplicatedVolumeSchema).max(256).exactOptional(),
  unsupported: z.array(z.string().max(1024)).max(256).exactOptional(),
  capturedAt: z.iso.datetime(),
}).refine((s) => s.portBindingsNull !== true || Object.keys(s.portBindings).length === 0, {
  message: 'portBindingsNull comes with no port bindings', path: ['portBindingsNull'],
});

/** Pure: the spec of an inspected container. */
export function specFromInspect(inspect: ContainerInspect, capturedAt: Date): TwinSpec {
  const { Config: config, HostConfig: host } = inspect;
  const portBindings: Record<string, PortBinding[]> = {};
  for (const [port, bindings] of Object.entries(host.PortBindings ?? {})) {
    portBindings[port] = (bindings ?? []).map((b) => ({ hostIp: b.HostIp ?? '', hostPort: b.HostPort ?? '' }));
  }
  const spec: TwinSpec = {
    version: 1,
    name: inspect.Name.replace(/^\//, ''),
    image: config.Image,
    imageId: inspect.Image,
    cmd: config.Cmd ?? null,
    entrypoint: config.Entrypoint ?? null,
    env: config.Env ?? [],
    labels: Object.fromEntries(Object.entries(config.Labels ?? {}).filter(([k]) => !OWN_LABELS.includes(k))),
    workingDir: config.WorkingDir ?? '',
    user: config.User ?? '',
    exposedPorts: Object.keys(config.ExposedPorts ?? {}).sort(),
    portBindings,
    networkMode: host.NetworkMode ?? 'default',
    restartPolicy: restartPolicyOf(host.RestartPolicy),
    capturedAt: capturedAt.toISOString(),
  };
  if (host.PortBindings === null || host.PortBindings === undefined) spec.portBindingsNull = true;
  const hostname = config.Hostname;
  // In the host's UTS namespace the hostname is the host's own (and Docker refuses to be given one).
  const ownUts = host['UTSMode'] !== 'host';
  if (ownUts && hostname !== undefined && hostname !== '' && hostname !== inspect.Id.slice(0, 12)) spec.hostname = hostname;
  const run = runSettingsFromInspect({ id: inspect.Id, hostname, config, hostConfig: host, networks: inspect.NetworkSettings?.Networks });
  spec.config = run.config;
  spec.hostConfig = run.hostConfig;
  spec.networks = run.networks;
  const volumes = volumesFromInspect(spec.name, inspect.Mounts ?? [], host);
  spec.volumes = volumes.volumes;
  if (volumes.unreplicated.length > 0) spec.unreplicatedVolumes = volumes.unreplicated;
  spec.unsupported = [...run.unsupported, ...volumes.unsupported];
  return spec;
}

/** The network a twin is created on (named by networkMode); `default` is the bridge network. */
export function primaryNetworkOf(spec: TwinSpec): string {
  return spec.networkMode === 'default' ? 'bridge' : spec.networkMode;
}

/** Pure: the networks connected after create (`docker network connect`), in name order. */
export function additionalNetworks(spec: TwinSpec): Array<[string, EndpointSpec]> {
  const primary = primaryNetworkOf(spec);
  return Object.entries(spec.networks ?? {}).filter(([name]) => name !== primary).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Docker reports an unset policy as "" (or omits it): both mean `no`. Unknown names are refused by the schema. */
function restartPolicyOf(raw: { Name?: string | undefined; MaximumRetryCount?: number | undefined } | null | undefined): RestartPolicy {
  const name = raw?.Name ?? '';
  if (name === 'always' || name === 'unless-stopped') return { name, maximumRetryCount: 0 };
  if (name === 'on-failure') return { name, maximumRetryCount: Math.max(0, raw?.MaximumRetryCount ?? 0) };
  return { ...NO_RESTART };
}

/** Pure: the labels of a twin — all of the primary's (the opt-in label included: a twin is a full replica, and the
 *  role, not a label, decides whether it is pushed) plus ours, which marks a container twinlayer created and may
 *  stage into. */
export function twinLabels(spec: TwinSpec, group?: string): Record<string, string> {
  const labels: Record<string, string> = { ...spec.labels };
  labels[TWIN_LABEL] = 'true';
  labels[SPEC_LABEL] = specDigest(spec);
  if (group !== undefined) labels[GROUP_LABEL] = group;
  return labels;
}

/** Pure: what identifies how a twin is created from a spec — everything but the capture time and portBindingsNull (key
 *  order fixed). null PortBindings run as {} do; left out, a spec that gains the field (captured by a newer twinlayer)
 *  keeps its digest: its twin is not recreated, nor a full commit forced, by an upgrade, and a standby not yet upgraded
 *  still finds the spec its records name. */
export function specDigest(spec: TwinSpec): string {
  const { capturedAt: _capturedAt, portBindingsNull: _portBindingsNull, ...config } = spec;
  return createHash('sha256').update(stableJson(config)).digest('hex');
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** Pure: the create request for a twin — same config, by image id, restart policy off. */
export function createOptionsFromSpec(spec: TwinSpec, group?: string): ContainerCreateOptions {
  const exposed: Record<string, object> = {};
  for (const port of spec.exposedPorts) exposed[port] = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const [port, list] of Object.entries(spec.portBindings)) bindings[port] = list.map((b) => ({ HostIp: b.hostIp, HostPort: b.hostPort }));
  // The run settings are Docker's own JSON (null included, which dockerode's types do not admit): passed as they are.
  const options = {
    ...spec.config,
    name: spec.name,
    Image: spec.imageId,
    Env: spec.env,
    Labels: twinLabels(spec, group),
    WorkingDir: spec.workingDir,
    User: spec.user,
    ExposedPorts: exposed,
    HostConfig: { ...spec.hostConfig, NetworkMode: spec.networkMode, PortBindings: spec.portBindingsNull === true ? null : bindings, RestartPolicy: { Name: 'no' } },
  } as ContainerCreateOptions;
  bindAnonymousVolumes(spec, options);
  const endpoint = spec.networks?.[primaryNetworkOf(spec)];
  if (endpoint !== undefined) options.NetworkingConfig = { EndpointsConfig: { [primaryNetworkOf(spec)]: endpoint as object } };
  // null means "the image's default": leave the field out rather than override it with an empty list.
  if (spec.cmd !== null) options.Cmd = spec.cmd;
  if (spec.entrypoint !== null) options.Entrypoint = spec.entrypoint;
  if (spec.hostname !== undefined) options.Hostname = spec.hostname;
  return options;
}

/** The twin mounts a named volume where the primary has an anonymous one (its content is replicated into it): a
 *  `--mount` without a source gets the name, any other (an image's VOLUME, `-v /dest`) a `name:/dest` bind, which
 *  takes the place of the anonymous volume Docker would create there. */
function bindAnonymousVolumes(spec: TwinSpec, options: ContainerCreateOptions): void {
  const anonymous = (spec.volumes ?? []).filter((v) => v.anonymous === true);
  if (anonymous.length === 0) return;
  const host = (options.HostConfig ?? {}) as Record<string, unknown>;
  const mounts = Array.isArray(host['Mounts']) ? (host['Mounts'] as Array<Record<string, unknown>>).map((m) => ({ ...m })) : null;
  const binds = Array.isArray(host['Binds']) ? [...(host['Binds'] as string[])] : [];
  for (const v of anonymous) {
    const mount = mounts?.find((m) => m['Type'] === 'volume' && m['Target'] === v.destination && (m['Source'] === undefined || m['Source'] === ''));
    if (mount !== undefined) mount['Source'] = v.name;
    else binds.push(`${v.name}:${v.destination}`);
  }
  if (mounts !== null) host['Mounts'] = mounts;
  if (binds.length > 0) host['Binds'] = binds;
  options.HostConfig = host;
}

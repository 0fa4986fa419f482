// The twin spec: what the standby needs from the primary's `docker inspect` to create an equivalent stopped twin.
import { z } from 'zod';
import type { ContainerCreateOptions } from 'dockerode';
import { ENABLE_LABEL, TWIN_LABEL } from './labels.js';
import type { ContainerInspect } from './schemas.js';

export interface PortBinding {
  hostIp: string;
  hostPort: string;
}

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
  networkMode: string;
  /** Only when set explicitly on the primary (Docker's default is the short container id). */
  hostname?: string;
  capturedAt: string;
}

// Container names as Docker accepts them; the name also becomes a bucket key segment elsewhere.
const containerName = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$/, 'a Docker container name');

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
  networkMode: z.string().min(1),
  hostname: z.string().min(1).max(253).exactOptional(),
  capturedAt: z.iso.datetime(),
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
    labels: { ...(config.Labels ?? {}) },
    workingDir: config.WorkingDir ?? '',
    user: config.User ?? '',
    exposedPorts: Object.keys(config.ExposedPorts ?? {}).sort(),
    portBindings,
    networkMode: host.NetworkMode ?? 'default',
    capturedAt: capturedAt.toISOString(),
  };
  const hostname = config.Hostname;
  if (hostname !== undefined && hostname !== '' && hostname !== inspect.Id.slice(0, 12)) spec.hostname = hostname;
  return spec;
}

/** Pure: the labels of a twin — the primary's minus the opt-in label (a twin must never be protected itself) plus ours. */
export function twinLabels(spec: TwinSpec): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.labels)) if (k !== ENABLE_LABEL && k !== TWIN_LABEL) labels[k] = v;
  labels[TWIN_LABEL] = 'true';
  return labels;
}

/** Pure: the create request for a twin — same config, by image id, restart policy off. */
export function createOptionsFromSpec(spec: TwinSpec): ContainerCreateOptions {
  const exposed: Record<string, object> = {};
  for (const port of spec.exposedPorts) exposed[port] = {};
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  for (const [port, list] of Object.entries(spec.portBindings)) bindings[port] = list.map((b) => ({ HostIp: b.hostIp, HostPort: b.hostPort }));
  const options: ContainerCreateOptions = {
    name: spec.name,
    Image: spec.imageId,
    Env: spec.env,
    Labels: twinLabels(spec),
    WorkingDir: spec.workingDir,
    User: spec.user,
    ExposedPorts: exposed,
    HostConfig: { NetworkMode: spec.networkMode, PortBindings: bindings, RestartPolicy: { Name: 'no' } },
  };
  // null means "the image's default": leave the field out rather than override it with an empty list.
  if (spec.cmd !== null) options.Cmd = spec.cmd;
  if (spec.entrypoint !== null) options.Entrypoint = spec.entrypoint;
  if (spec.hostname !== undefined) options.Hostname = spec.hostname;
  return options;
}

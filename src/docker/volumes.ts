// A container's volumes as twinlayer replicates them: named and anonymous volumes of the local driver, each found
// by its mount in docker inspect and checked to be `<docker root>/volumes/<name>/_data`, a real directory reached
// without a symlink. An anonymous volume's name is random per engine, so its twin gets a named volume of a name
// derived from the container and the mount destination, recorded in the spec. Bind mounts belong to the host and
// are not replicated.
import { createHash } from 'node:crypto';
import { lstat, realpath } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import { LayerResolveError } from './errors.js';
import type { ErrorContext } from '../log/errors.js';

export const mountSchema = z.looseObject({
  Type: z.string(),
  Name: z.string().optional(),
  Source: z.string().optional(),
  Destination: z.string(),
  Driver: z.string().optional(),
  RW: z.boolean().optional(),
});
export type InspectMount = z.infer<typeof mountSchema>;

/** A local volume as `docker volume inspect` shows it. */
export const volumeInspectSchema = z.looseObject({
  Name: z.string(),
  Driver: z.string(),
  Mountpoint: z.string(),
  Options: z.record(z.string(), z.string()).nullable().optional(),
  Labels: z.record(z.string(), z.string()).nullable().optional(),
});
export type VolumeInspect = z.infer<typeof volumeInspectSchema>;

const volumeName = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

/** A volume of a twin spec: the name its twin mounts (the primary's for a named volume, a derived one for an
 *  anonymous volume) at the same destination. */
export interface VolumeSpec {
  name: string;
  destination: string;
  /** The primary's volume is anonymous: the twin's named volume is created by twinlayer and bound at create. */
  anonymous?: true;
}

/** A replicated volume of a protected container: its name on the twin, where it is mounted, its dir here. */
export interface ContainerVolume {
  name: string;
  destination: string;
  dir: string;
}

export const volumeSpecSchema: z.ZodType<VolumeSpec> = z.strictObject({
  name: z.string().regex(volumeName, 'a Docker volume name'),
  destination: z.string().min(1).max(4096).refine((d) => d.startsWith('/') && path.posix.normalize(d) === d && !d.includes('\0') && (d === '/' || !d.endsWith('/')), 'a normalized absolute path'),
  anonymous: z.literal(true).exactOptional(),
});

/** Pure: the name of the twin's volume for an anonymous volume of `container` mounted at `destination`. */
export function anonymousTwinVolumeName(container: string, destination: string): string {
  return `twinlayer-anon-${createHash('sha256').update(`${container}\0${destination}`).digest('hex').slice(0, 24)}`;
}

/** Pure: the names a container's config gives its volumes explicitly (HostConfig.Binds `name:/dest`, HostConfig.Mounts
 *  of type volume with a Source); any other volume mount is anonymous. */
export function namedVolumeSources(hostConfig: Record<string, unknown>): Set<string> {
  const names = new Set<string>();
  const binds = hostConfig['Binds'];
  if (Array.isArray(binds)) {
    for (const b of binds) {
      if (typeof b !== 'string') continue;
      const source = b.split(':')[0] ?? '';
      if (!source.startsWith('/')) names.add(source);
    }
  }
  const mounts = hostConfig['Mounts'];
  if (Array.isArray(mounts)) {
    for (const m of mounts) {
      if (typeof m !== 'object' || m === null) continue;
      const r = m as Record<string, unknown>;
      if (r['Type'] === 'volume' && typeof r['Source'] === 'string' && r['Source'] !== '') names.add(r['Source']);
    }
  }
  return names;
}

/** Pure: the volumes of an inspected container, in destination order, as the spec records them, and what cannot
 *  be replicated (another driver's volume: the twin would get an empty local one, a silent difference). */
export function volumesFromInspect(container: string, mounts: readonly InspectMount[], hostConfig: Record<string, unknown>): { volumes: VolumeSpec[]; unsupported: string[] } {
  const named = namedVolumeSources(hostConfig);
  const volumes: VolumeSpec[] = [];
  const unsupported: string[] = [];
  for (const m of [...mounts].sort((a, b) => (a.Destination < b.Destination ? -1 : a.Destination > b.Destination ? 1 : 0))) {
    if (m.Type !== 'volume') continue;
    const name = m.Name ?? '';
    const driver = m.Driver ?? 'local';
    if (!volumeName.test(name)) {
      unsupported.push(`volume ${JSON.stringify(name.slice(0, 80))} at ${m.Destination} has no Docker volume name`);
      continue;
    }
    if (driver !== 'local') {
      unsupported.push(`volume ${name} at ${m.Destination} uses the ${JSON.stringify(driver.slice(0, 80))} driver; only local volumes are replicated`);
      continue;
    }
    volumes.push(named.has(name) ? { name, destination: m.Destination } : { name: anonymousTwinVolumeName(container, m.Destination), destination: m.Destination, anonymous: true });
  }
  return { volumes, unsupported };
}

/** Pure: why a local volume cannot be replicated or be a twin's, or null. A local volume with options mounts
 *  whatever its device says (`type=none,o=bind,device=/etc` is any host path): not a plain directory of Docker's. */
export function volumeInspectProblem(v: VolumeInspect, dataRoot: string): string | null {
  if (v.Driver !== 'local') return `volume ${v.Name} uses the ${JSON.stringify(v.Driver.slice(0, 80))} driver; only local volumes are replicated`;
  if (Object.keys(v.Options ?? {}).length > 0) return `volume ${v.Name} has driver options (${Object.keys(v.Options ?? {}).join(', ')}); only plain local volumes are replicated`;
  const expected = path.join(dataRoot, 'volumes', v.Name, '_data');
  if (v.Mountpoint !== expected) return `volume ${v.Name}'s mountpoint ${JSON.stringify(v.Mountpoint.slice(0, 200))} is not ${expected}`;
  return null;
}

/** The volume dir on disk: a real directory (not a symlink), reached without a symlink from the docker root. */
export async function verifyVolumeDir(dir: string, dataRoot: string, context: ErrorContext): Promise<void> {
  const base = path.join(dataRoot, 'volumes');
  const rel = path.relative(base, dir);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel) || path.normalize(dir) !== dir) {
    throw new LayerResolveError(`volume dir ${dir} is not under ${base}/`, { ...context, path: dir });
  }
  let real: string;
  try {
    const st = await lstat(dir);
    if (st.isSymbolicLink()) throw new LayerResolveError('the volume dir is a symlink', { ...context, path: dir });
    if (!st.isDirectory()) throw new LayerResolveError('the volume dir is not a directory', { ...context, path: dir });
    real = await realpath(dir);
  } catch (cause) {
    if (cause instanceof LayerResolveError) throw cause;
    throw new LayerResolveError('the volume dir cannot be read', { ...context, path: dir }, { cause });
  }
  if (real !== dir) throw new LayerResolveError(`the volume dir resolves through a symlink to ${real}`, { ...context, path: dir });
}

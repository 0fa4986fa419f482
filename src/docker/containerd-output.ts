// Pure parsers of what containerd tells about a container's writable layer under Docker's containerd image store:
// the `ctr` client's text output (version, plugin introspection, a snapshot's mounts) and the overlay line of
// /proc/<pid>/mountinfo; and the check that turns overlay options into OverlayLayers twinlayer may write into.
// Strict: a line that is not what containerd 1.7 prints is refused, not guessed at.
import * as path from 'node:path';
import { LayerResolveError } from './errors.js';
import type { OverlayLayers } from './layers.js';
import type { ErrorContext } from '../log/errors.js';

/** The snapshotter twinlayer handles (its upper dirs are plain overlayfs upper dirs). */
export const OVERLAYFS_SNAPSHOTTER = 'overlayfs';
export const SNAPSHOTTER_PLUGIN_TYPE = 'io.containerd.snapshotter.v1';

/** The server part of `ctr version`: containerd's version and revision (docker info's ContainerdCommit.ID). */
export function parseCtrVersion(text: string): { version: string; revision: string } | null {
  const lines = text.split('\n');
  const server = lines.findIndex((l) => l === 'Server:');
  if (server < 0) return null;
  const fields = new Map<string, string>();
  for (const line of lines.slice(server + 1)) {
    const m = /^ {2}([A-Za-z ]+):\s+(\S+)$/.exec(line);
    if (m === null) break;
    fields.set(m[1] ?? '', m[2] ?? '');
  }
  const version = fields.get('Version');
  const revision = fields.get('Revision');
  return version === undefined || revision === undefined ? null : { version, revision };
}

export interface PluginInfo {
  type: string;
  id: string;
  /** Its `root` export: the directory the plugin keeps its data in. */
  root: string | null;
  /** Why it did not load (its Error section's Message), or null. */
  error: string | null;
}

/** `ctr plugins ls --detailed`: one block per plugin, starting with `Type:`. Throws on a line of another shape. */
export function parsePluginsDetailed(text: string): PluginInfo[] {
  const plugins: PluginInfo[] = [];
  let current: PluginInfo | null = null;
  let section = '';
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    const top = /^([A-Z][A-Za-z]*):\s*(.*?)\s*$/.exec(line);
    if (top !== null) {
      const [, key = '', value = ''] = top;
      if (key === 'Type') {
        current = { type: value, id: '', root: null, error: null };
        plugins.push(current);
      } else if (current === null) {
        throw new Error(`line ${i + 1}: "${key}:" before any "Type:"`);
      } else if (key === 'ID') {
        current.id = value;
      } else if (!['Platforms', 'Exports', 'Error', 'Requires', 'Capabilities'].includes(key)) {
        throw new Error(`line ${i + 1}: unexpected field "${key}:"`);
      }
      section = key;
      continue;
    }
    const sub = /^\s{2,}(\S+?):?(?:\s+(.*?))?\s*$/.exec(line);
    if (sub === null || current === null) throw new Error(`line ${i + 1}: not a plugin field: ${JSON.stringify(line.slice(0, 120))}`);
    const [, key = '', value = ''] = sub;
    if (section === 'Exports' && key === 'root') current.root = value;
    if (section === 'Error' && key === 'Message') current.error = value;
  }
  for (const p of plugins) if (p.type === '' || p.id === '') throw new Error('a plugin block without Type or ID');
  return plugins;
}

/** `ctr snapshots mounts <target> <key>` prints the mount command; the overlay options of it. Throws unless it is
 *  exactly one `mount -t overlay overlay <target> -o <options>` line (a bind mount means no parent: not a container). */
export function overlayOptionsFromCtrMounts(text: string, target: string): string {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length !== 1) throw new Error(`expected one mount line, got ${lines.length}`);
  const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(lines[0] ?? '');
  if (m === null) throw new Error(`not a mount line: ${JSON.stringify((lines[0] ?? '').slice(0, 200))}`);
  const [, type, source, point, options = ''] = m;
  if (type !== 'overlay' || source !== 'overlay') throw new Error(`the snapshot mounts as ${type} from ${source}, not as an overlay`);
  if (point !== target) throw new Error(`the mount line names ${point}, not ${target}`);
  return options;
}

function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export interface OverlayMount {
  mountPoint: string;
  /** The super options, still escaped as mountinfo shows them (a comma inside a path is \054). */
  superOptions: string;
}

/** Every overlay mount of a mountinfo text, with its mount point and super options. */
export function overlayMounts(mountinfo: string): OverlayMount[] {
  const out: OverlayMount[] = [];
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) continue;
    if (fields[sep + 1] !== 'overlay') continue;
    out.push({ mountPoint: unescapeOctal(fields[4] ?? ''), superOptions: fields[sep + 3] ?? '' });
  }
  return out;
}

export interface OverlayOptions {
  upperdir: string;
  workdir: string;
  /** Topmost first. */
  lowerdirs: string[];
  /** Every option by name (flags without a value map to ''). */
  all: Map<string, string>;
}

/** Splits overlay mount options (comma-separated, escapes as mountinfo writes them undone after the split). */
export function parseOverlayOptions(options: string): OverlayOptions {
  const all = new Map<string, string>();
  for (const part of options.split(',')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : unescapeOctal(part.slice(eq + 1));
    if (all.has(key)) throw new Error(`option ${key} given twice`);
    all.set(key, value);
  }
  const upperdir = all.get('upperdir');
  const workdir = all.get('workdir');
  const lowerdir = all.get('lowerdir');
  if (upperdir === undefined || upperdir === '') throw new Error('no upperdir (a read-only view, not a container\'s writable layer)');
  if (workdir === undefined || workdir === '') throw new Error('no workdir');
  if (lowerdir === undefined || lowerdir === '') throw new Error('no lowerdir');
  return { upperdir, workdir, lowerdirs: lowerdir.split(':'), all };
}

/** The overlay module's defaults for what a mount does not say (/sys/module/overlay/parameters, Y or N). */
export interface OverlayKernelDefaults {
  redirectDir: boolean;
  metacopy: boolean;
}

/** Why overlay options (with the kernel's defaults for those not given) make the upper dir not self-contained, or null:
 *  with redirect_dir a renamed dir points into a lower layer, with metacopy a file's data stays there. */
export function overlayFeatureProblem(all: ReadonlyMap<string, string>, defaults: OverlayKernelDefaults): string | null {
  const redirect = all.get('redirect_dir');
  if (redirect === 'on' || (redirect === undefined && defaults.redirectDir)) {
    return `overlayfs redirect_dir is on${redirect === undefined ? ' (the kernel\'s default)' : ''}: renamed directories point into lower layers`;
  }
  const metacopy = all.get('metacopy');
  if (metacopy === 'on' || (metacopy === undefined && defaults.metacopy)) {
    return `overlayfs metacopy is on${metacopy === undefined ? ' (the kernel\'s default)' : ''}: copied-up files keep their data in lower layers`;
  }
  return null;
}

const SNAPSHOT_DIR = /^snapshots\/(\d{1,12})\/(fs|work)$/;

/** `<snapshotter root>/snapshots/<N>/<leaf>` → N, or null when `dir` is anything else (normalized, no `..`). */
function snapshotNumber(dir: string, snapshotterRoot: string, leaf: 'fs' | 'work'): string | null {
  if (!path.isAbsolute(dir) || path.normalize(dir) !== dir) return null;
  const rel = path.relative(snapshotterRoot, dir);
  const m = SNAPSHOT_DIR.exec(rel);
  return m !== null && m[2] === leaf ? (m[1] ?? null) : null;
}

/** Pure: the layers of a container on the containerd store from its snapshot's overlay options. Refused
 *  (LayerResolveError) unless the upper, work and lower dirs are containerd overlayfs snapshot dirs under
 *  `snapshotterRoot` (upper and work of one snapshot, lowers of others) and the mount keeps the upper dir
 *  self-contained. `mergedDir` is where Docker mounts the container's rootfs while it runs. */
export function layersFromOverlayOptions(
  options: OverlayOptions,
  snapshotterRoot: string,
  mergedDir: string,
  defaults: OverlayKernelDefaults,
  context: ErrorContext,
): OverlayLayers {
  const feature = overlayFeatureProblem(options.all, defaults);
  if (feature !== null) throw new LayerResolveError(feature, context);
  const where = `${snapshotterRoot}/snapshots/<N>`;
  const upper = snapshotNumber(options.upperdir, snapshotterRoot, 'fs');
  if (upper === null) throw new LayerResolveError(`upperdir "${options.upperdir}" is not ${where}/fs`, { ...context, path: options.upperdir });
  const work = snapshotNumber(options.workdir, snapshotterRoot, 'work');
  if (work !== upper) throw new LayerResolveError(`workdir "${options.workdir}" is not ${snapshotterRoot}/snapshots/${upper}/work`, { ...context, path: options.workdir });
  for (const dir of options.lowerdirs) {
    const n = snapshotNumber(dir, snapshotterRoot, 'fs');
    if (n === null || n === upper) throw new LayerResolveError(`a lowerdir entry "${dir}" is not another snapshot's ${where}/fs`, { ...context, path: dir });
  }
  return { upperDir: options.upperdir, lowerDirs: options.lowerdirs, mergedDir, workDir: options.workdir };
}

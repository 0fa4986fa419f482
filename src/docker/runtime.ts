// DockerRuntime: the one seam between twinlayer and a Docker engine (dockerode over the engine's unix socket).
import type DockerType from 'dockerode';
import Docker from './dockerode.js';
import PQueue from 'p-queue';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../log/logger.js';
import type { Logger } from '../log/logger.js';
import type { ErrorContext } from '../log/errors.js';
import { engineFactsFromInfo } from './engine-facts.js';
import type { EngineFacts, ImageStore } from './engine-facts.js';
import { ContainerNotFoundError, DockerApiError, EngineUnsupportedError, ImageMissingError, LayerResolveError, TwinHostNotReadyError, TwinRefusedError, TwinSpecRefusedError } from './errors.js';
import { GROUP_LABEL, SPEC_LABEL, TWIN_LABEL } from './labels.js';
import { layersFromGraphDriver, verifyUpperDirOnDisk } from './layers.js';
import type { OverlayLayers } from './layers.js';
import { parseMountPoints } from './mountinfo.js';
import { layersFromOverlayOptions, overlayFeatureProblem, overlayMounts, parseOverlayOptions } from './containerd-output.js';
import type { OverlayKernelDefaults } from './containerd-output.js';
import { contentBytes, locateContainerd, overlayKernelDefaults, snapshotOverlayOptions } from './containerd-store.js';
import { imageIdentitySchema, manifestForPlatform, parseContentDocument, sameIdentity } from './image-identity.js';
import type { ImageIdentity } from './image-identity.js';
import type { ContainerdEndpoint, ContainerdSettings } from './containerd-store.js';
import { readFile } from 'node:fs/promises';
import { pipeline as streamPipeline, type Readable } from 'node:stream';
import { readRelease } from '../streams/read-release.js';
import * as path from 'node:path';
import { imageInspectSchema, imageListSchema, inspectSchema, listSchema, networkInspectSchema } from './schemas.js';
import type { ContainerInspect } from './schemas.js';
import { z } from 'zod';
import { parseBind } from './spec-run.js';
import { additionalNetworks, createOptionsFromSpec, specFromInspect } from './spec.js';
import type { RestartPolicy, TwinSpec } from './spec.js';
import { bindSourceProblems, standbyProblems, volumeNames } from './standby-checks.js';
import type { HostLookups, VolumeFacts } from './standby-checks.js';
import { namedVolumeSources, verifyVolumeDir, volumeInspectProblem, volumeInspectSchema, volumesFromInspect } from './volumes.js';
import type { ContainerVolume, VolumeInspect } from './volumes.js';
import { DEFAULT_TWIN_POLICY, foreignVolumeRefusal, specRefusals } from './twin-policy.js';
import type { EngineDefaults, TwinPolicy } from './twin-policy.js';

export interface ProtectedContainer {
  id: string;
  name: string;
  imageId: string;
  imageRef: string;
  running: boolean;
  /** Created by twinlayer from a spec (label twinlayer.twin=true): a promoted twin, in the agent. */
  isTwin: boolean;
  layers: OverlayLayers;
  /** Its replicated volumes (plain local ones), by the name the twin mounts; others are in the spec's
   *  `unreplicatedVolumes`. */
  volumes: ContainerVolume[];
}

export interface ListProtectedOptions {
  /** Also list twins that carry the opt-in label (the agent: the role decides what is pushed, not a label). */
  includeTwins?: boolean;
  /** Containers already known, name → id: one listed under the same name and id is not inspected again, only named in
   *  `kept` (a discovery every 2 s inspected every protected container each time). */
  known?: ReadonlyMap<string, string>;
}

/** A labelled container that could not be protected, with the reason (for the status). */
export interface RefusedContainer {
  id: string;
  name: string;
  error: Error;
}

export type TwinState =
  | { state: 'absent' }
  | {
    state: 'stopped' | 'running';
    id: string;
    mounted: boolean;
    layers: OverlayLayers;
    imageId: string;
    isTwin: boolean;
    /** The digest of the spec the twin was created from (label); null for a twin made before it was recorded. */
    specDigest: string | null;
    /** Its volumes (local, checked) by name: the dir each one's content lives in. Staging writes only into those
     *  its spec's `volumes` names (stageTargetOf); the others are the host's (a trusted spec may mount them). */
    volumes: Record<string, string>;
    /** Other containers of this engine that use a volume the twin mounts, by volume name (none: absent). Staging
     *  into a volume another container uses would write under that container: it waits, like a mounted twin. */
    volumeUsers: Record<string, string[]>;
    /** The host paths it bind-mounts (HostConfig.Binds and Mounts); null (or absent) when not known. */
    bindSources?: string[] | null;
  };

export interface StartResult {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
  /** The engine answered 304: the container was already running (counted as ok). */
  alreadyRunning?: boolean;
}

export interface DockerRuntimeOptions {
  /** The engine's API socket, e.g. /var/run/docker.sock. */
  socketPath: string;
  /** Default: a logger that drops everything. */
  log?: Logger;
  /** Where to look for the twins' overlay mounts. Default /proc/self/mountinfo. An engine started in another
   *  mount namespace (e.g. under `ip netns exec`) mounts there: pass `/proc/<dockerd pid>/mountinfo`. */
  mountInfoPath?: string;
  /** Bound for each API request (ms); a request past it fails. Default: none (the engine's own pace). */
  requestTimeoutMs?: number;
  /** The engine's containerd, for the containerd image store (found from the engine when not given). */
  containerd?: ContainerdSettings;
}

export interface EnsureTwinOptions {
  /** Labelled on the twin (twinlayer.group). */
  group?: string;
  /** The spec is trusted (signed by a key the group trusts): only then are its privileged fields honoured. */
  trusted: boolean;
  /** The host's policy on privileged fields. Default DEFAULT_TWIN_POLICY. */
  policy?: TwinPolicy;
  /** What this host lacks for the spec, when the caller has just checked (hostProblems); checked here otherwise. */
  hostProblems?: readonly string[];
}

/** Checked right before a twin starts (startContainers' beforeStart): a reason not to start it, or null. */
export type StartCheck = (name: string) => Promise<string | null>;

/** A saved image's socket reads are freed each this many bytes (streams/read-release.ts). */
const SAVE_RELEASE_BYTES = 1024 * 1024;

// The bind sources of a container as its inspect shows them.
const bindsOfInspect = z.looseObject({
  Binds: z.array(z.string()).nullable().optional(),
  Mounts: z.array(z.looseObject({ Type: z.string().optional(), Source: z.string().optional() })).nullable().optional(),
});

/** The bind sources of a container as its inspect shows them; null when HostConfig's binds do not parse. */
function bindSourcesOfInspect(inspect: ContainerInspect): string[] | null {
  const host = bindsOfInspect.safeParse(inspect.HostConfig);
  if (!host.success) return null;
  const sources: string[] = [];
  for (const b of host.data.Binds ?? []) {
    const parsed = parseBind(b);
    if (typeof parsed !== 'string') {
      if (parsed.kind === 'bind') sources.push(parsed.source);
    } else if (b.startsWith('/')) {
      sources.push(b.split(':')[0] ?? b);
    }
  }
  for (const m of host.data.Mounts ?? []) if (m.Type === 'bind' && m.Source !== undefined) sources.push(m.Source);
  return sources;
}

/** What removeAllContainers could not remove, by container id. */
export interface RemoveFailure {
  id: string;
  error: string;
}

function statusOf(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && 'statusCode' in err && typeof err.statusCode === 'number') return err.statusCode;
  return undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class DockerRuntime {
  readonly #docker: DockerType;
  readonly #log: Logger;
  readonly #mountInfoPath: string;
  readonly #containerdSettings: ContainerdSettings;
  #facts: EngineFacts | undefined;
  /** The containerd image store: the engine's containerd and the overlay module's defaults, found by checkEngine. */
  #containerd: { endpoint: ContainerdEndpoint; overlayDefaults: OverlayKernelDefaults } | undefined;
  /** Image identities by image id: an id is a content digest, so what it names never changes. */
  readonly #identities = new Map<string, ImageIdentity>();
  /** The containerd store: a stopped container's snapshot options by container id. A container keeps its snapshot
   *  for life and containerd never reuses a snapshot's number, so an entry stays true while the container exists
   *  (checked each time: inspect first, the upper dir on disk after); spares a ctr process per poll of each twin. */
  readonly #snapshotOptions = new Map<string, string>();

  constructor(opts: DockerRuntimeOptions) {
    this.#docker = new Docker({ socketPath: opts.socketPath, ...(opts.requestTimeoutMs === undefined ? {} : { timeout: opts.requestTimeoutMs }) });
    this.#log = opts.log ?? silentLogger;
    this.#mountInfoPath = opts.mountInfoPath ?? '/proc/self/mountinfo';
    this.#containerdSettings = opts.containerd ?? {};
  }

  /** docker info; throws EngineUnsupportedError naming the reason unless the upper dirs can be resolved and trusted.
   *  On the containerd image store, also finds the engine's containerd (EngineUnsupportedError when it cannot). */
  async checkEngine(): Promise<EngineFacts> {
    let raw: unknown;
    try {
      raw = await this.#docker.info();
    } catch (cause) {
      throw new DockerApiError('info', statusOf(cause), {}, { cause });
    }
    const facts = engineFactsFromInfo(raw);
    if (facts.store === 'containerd') {
      const overlayDefaults = await overlayKernelDefaults();
      // Containerd's overlayfs snapshotter names neither option: the kernel's defaults apply to every snapshot.
      const problem = overlayFeatureProblem(new Map(), overlayDefaults);
      if (problem !== null) throw new EngineUnsupportedError(`${problem}, so upper dirs are not self-contained`, { driver: facts.driver, serverVersion: facts.serverVersion });
      this.#containerd = { endpoint: await locateContainerd(facts, this.#containerdSettings), overlayDefaults };
    }
    this.#facts = facts;
    return facts;
  }

  async #engineFacts(): Promise<EngineFacts> {
    return this.#facts ?? (await this.checkEngine());
  }

  async #dataRoot(): Promise<string> {
    return (await this.#engineFacts()).dataRoot;
  }

  /** Containers (running or not) labelled `${label}=true` that are not twins, with resolved layers. A labelled
   *  container whose layers are refused is logged as a warning and left out; listProtectedDetailed returns it. */
  async listProtected(label: string, opts: ListProtectedOptions = {}): Promise<ProtectedContainer[]> {
    const { containers, refused } = await this.listProtectedDetailed(label, opts);
    for (const r of refused) this.#log.warn('labelled container not protected', { container: r.name, id: r.id, error: r.error });
    return containers;
  }

  /** listProtected for a caller that knows some of them already (`opts.known`): the new or replaced ones resolved, the
   *  known ones still listed by name. */
  async listProtectedChanges(label: string, opts: ListProtectedOptions & { known: ReadonlyMap<string, string> }): Promise<{ containers: ProtectedContainer[]; kept: string[] }> {
    const { containers, refused, kept } = await this.listProtectedDetailed(label, opts);
    for (const r of refused) this.#log.warn('labelled container not protected', { container: r.name, id: r.id, error: r.error });
    return { containers, kept };
  }

  async listProtectedDetailed(label: string, opts: ListProtectedOptions = {}): Promise<{ containers: ProtectedContainer[]; refused: RefusedContainer[]; kept: string[] }> {
    let raw: unknown;
    try {
      raw = await this.#docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${label}=true`] }) });
    } catch (cause) {
      throw new DockerApiError('list containers', statusOf(cause), { label }, { cause });
    }
    const entries = this.#parse(listSchema, raw, 'list containers', {});
    const containers: ProtectedContainer[] = [];
    const refused: RefusedContainer[] = [];
    const kept: string[] = [];
    for (const entry of entries) {
      if (entry.Labels?.[TWIN_LABEL] === 'true' && opts.includeTwins !== true) continue;
      const name = (entry.Names?.[0] ?? entry.Id).replace(/^\//, '');
      if (opts.known?.get(name) === entry.Id) {
        kept.push(name);
        continue;
      }
      const inspect = await this.#inspectOrNull(entry.Id);
      if (inspect === null) continue; // removed between list and inspect
      try {
        // Removed between inspect and the layer lookup (containerd has no snapshot of it any more): gone, as above.
        const layers = await this.#layersOrGone(inspect);
        if (layers === null) continue;
        const volumes = await this.#replicatedVolumes(inspect);
        containers.push({
          id: inspect.Id,
          name: inspect.Name.replace(/^\//, ''),
          imageId: inspect.Image,
          imageRef: inspect.Config.Image,
          running: inspect.State.Running,
          isTwin: inspect.Config.Labels?.[TWIN_LABEL] === 'true',
          layers,
          volumes,
        });
      } catch (error) {
        refused.push({ id: entry.Id, name, error: error instanceof Error ? error : new Error(String(error)) });
      }
    }
    // Code-unit order, not localeCompare: its first call sets up ICU's collator, ~3 MB of RSS kept for the life of
    // the daemon (discovery lists every 2 s) for names Docker restricts to [a-zA-Z0-9_.-].
    containers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { containers, refused, kept };
  }

  /** inspect + the overlay dirs, refused (LayerResolveError) unless present, absolute, under the store's root
   *  (`${dataRoot}/overlay2/`, or containerd's overlayfs snapshots), and the upper dir is a real directory reached
   *  without symlinks. ContainerNotFoundError when the container is gone (also when it went during the lookup). */
  async resolveLayers(idOrName: string): Promise<OverlayLayers> {
    return this.#layersOf(await this.#inspect(idOrName));
  }

  /** The spec of a container. A local volume it mounts with driver options (not a plain directory of Docker's) is
   *  not replicated: it moves from `volumes` to `unreplicatedVolumes`, like a volume of another driver; a local
   *  volume that is gone or not where Docker keeps its volumes is recorded in `unsupported`. */
  async captureSpec(idOrName: string): Promise<TwinSpec> {
    const inspect = await this.#inspect(idOrName);
    const spec = specFromInspect(inspect, new Date());
    const identity = await this.imageIdentity(inspect.Image);
    if (identity !== null) spec.imageIdentity = identity;
    const dataRoot = await this.#dataRoot();
    for (const m of inspect.Mounts ?? []) {
      if (m.Type !== 'volume' || (m.Driver ?? 'local') !== 'local' || m.Name === undefined || m.Name === '') continue;
      const v = await this.#inspectVolume(m.Name);
      const options = Object.keys(v?.Options ?? {}).sort();
      if (options.length > 0) {
        spec.volumes = (spec.volumes ?? []).filter((x) => x.destination !== m.Destination);
        (spec.unreplicatedVolumes ??= []).push({ name: m.Name, destination: m.Destination, driver: 'local', options });
        continue;
      }
      const problem = v === null ? `volume ${m.Name} is gone` : volumeInspectProblem(v, dataRoot);
      if (problem !== null) (spec.unsupported ??= []).push(problem);
    }
    spec.unreplicatedVolumes?.sort((a, b) => (a.destination < b.destination ? -1 : a.destination > b.destination ? 1 : 0));
    return spec;
  }

  /** The replicated volumes of a container: each plain local volume mount, its dir checked (LayerResolveError
   *  otherwise: the container is not protected rather than protected without a volume). */
  async #replicatedVolumes(inspect: ContainerInspect): Promise<ContainerVolume[]> {
    const name = inspect.Name.replace(/^\//, '');
    const context: ErrorContext = { container: name, id: inspect.Id };
    const dataRoot = await this.#dataRoot();
    const mounts = inspect.Mounts ?? [];
    const { volumes } = volumesFromInspect(name, mounts, inspect.HostConfig);
    const out: ContainerVolume[] = [];
    for (const spec of volumes) {
      const m = mounts.find((x) => x.Type === 'volume' && x.Destination === spec.destination);
      // A local volume with driver options is not a plain dir of Docker's: not replicated, and its spec says so
      // (captureSpec), so a standby creates a twin without it only when its policy allows.
      const v = await this.#inspectVolume(m?.Name ?? '');
      if (v !== null && Object.keys(v.Options ?? {}).length > 0) continue;
      const dir = await this.#volumeDir(m?.Name ?? '', m?.Source ?? '', dataRoot, context);
      out.push({ name: spec.name, destination: spec.destination, dir });
    }
    return out;
  }

  /** A local volume's dir, checked: a plain local volume whose mountpoint is the mount's source and
   *  `<docker root>/volumes/<name>/_data`, a real directory reached without a symlink. */
  async #volumeDir(volume: string, source: string, dataRoot: string, context: ErrorContext): Promise<string> {
    const v = await this.#inspectVolume(volume);
    const problem = v === null ? `volume ${volume} does not exist` : volumeInspectProblem(v, dataRoot);
    if (problem !== null || v === null) throw new LayerResolveError(problem ?? 'volume missing', { ...context, volume });
    if (source !== '' && source !== v.Mountpoint) throw new LayerResolveError(`volume ${volume} is mounted from ${source}, not its mountpoint ${v.Mountpoint}`, { ...context, volume, path: source });
    await verifyVolumeDir(v.Mountpoint, dataRoot, { ...context, volume });
    return v.Mountpoint;
  }

  async #inspectVolume(name: string): Promise<VolumeInspect | null> {
    return this.#inspectParsedOrNull(() => this.#docker.getVolume(name).inspect(), volumeInspectSchema, 'inspect volume', { volume: name });
  }

  /** The twin's volumes, created before the twin (local driver, no options, labelled) so it mounts them, not new
   *  anonymous ones. A volume of that name that exists must be a plain local volume: another driver's, or one with
   *  options (a bind of a host path), is refused rather than staged into; one twinlayer did not create (no
   *  TWIN_LABEL: an operator's) is refused unless the spec is trusted (specRefusals says so first; checked again here
   *  against a volume created since). */
  async #ensureVolumes(spec: TwinSpec, group: string | undefined, trusted: boolean): Promise<void> {
    const dataRoot = await this.#dataRoot();
    // Every volume the twin would mount, also one the spec's binds name that it does not list (a spec of an older
    // version, or one written to mount an operator's volume): Docker would use whatever has that name here. A volume
    // the spec records as not replicated (allowed by the policy, or the spec is refused before this) is neither
    // created nor held to being plain: hostProblems checked what this host has of it against the policy.
    const replicated = new Set((spec.volumes ?? []).map((v) => v.name));
    const unreplicated = new Set((spec.unreplicatedVolumes ?? []).map((v) => v.name).filter((n) => !replicated.has(n)));
    const names = new Set([...replicated, ...namedVolumeSources(spec.hostConfig ?? {}), ...unreplicated]);
    const labels = { [TWIN_LABEL]: 'true', ...(group === undefined ? {} : { [GROUP_LABEL]: group }) };
    for (const name of [...names].sort()) {
      const context: ErrorContext = { container: spec.name, volume: name };
      const driver = (spec.unreplicatedVolumes ?? []).find((v) => v.name === name)?.driver;
      if (unreplicated.has(name) && driver !== undefined && (await this.#inspectVolume(name)) === null) {
        // Absent: made here as Docker would make it at create (the driver, no options), but labelled, so that the
        // twin's own volume is never taken for an operator's (specRefusals) when the twin is adopted later.
        try {
          await this.#docker.createVolume({ Name: name, Driver: driver, Labels: labels });
        } catch (cause) {
          throw new DockerApiError('create volume', statusOf(cause), context, { cause });
        }
      }
      if (!unreplicated.has(name)) {
        let v = await this.#inspectVolume(name);
        if (v === null) {
          try {
            await this.#docker.createVolume({ Name: name, Driver: 'local', Labels: labels });
          } catch (cause) {
            throw new DockerApiError('create volume', statusOf(cause), context, { cause });
          }
          v = await this.#inspectVolume(name);
        }
        const problem = v === null ? 'volume vanished after create' : volumeInspectProblem(v, dataRoot);
        if (problem !== null) throw new TwinSpecRefusedError([problem], context);
        if (!trusted && v?.Labels?.[TWIN_LABEL] !== 'true') throw new TwinSpecRefusedError([foreignVolumeRefusal([name])], context);
      }
      // Staging writes into the twin's plain local volumes: never into one another container of this host mounts (a
      // spec naming the volume of an unrelated service, or two protected containers sharing one).
      const users = await this.#containersUsingVolume(name);
      const other = users.find((u) => u.name !== spec.name);
      if (other !== undefined) throw new TwinSpecRefusedError([`volume ${name} is mounted by container ${other.name} on this host; a twin's volumes are its own`], context);
    }
  }

  /** The containers of this engine (running or not) that mount `volume`. */
  async #containersUsingVolume(volume: string): Promise<Array<{ id: string; name: string }>> {
    let raw: unknown;
    try {
      raw = await this.#docker.listContainers({ all: true, filters: JSON.stringify({ volume: [volume] }) });
    } catch (cause) {
      throw new DockerApiError('list containers', statusOf(cause), { volume }, { cause });
    }
    return this.#parse(listSchema, raw, 'list containers', { volume }).map((c) => ({ id: c.Id, name: (c.Names?.[0] ?? c.Id).replace(/^\//, '') }));
  }

  /** The volumes the spec would mount that exist on this engine and twinlayer did not create (no TWIN_LABEL): an
   *  operator's, or another service's. Mounting one is for a trusted spec only (specRefusals). */
  async #foreignVolumes(spec: TwinSpec): Promise<string[]> {
    const names = new Set([...(spec.volumes ?? []).map((v) => v.name), ...volumeNames(spec), ...(spec.unreplicatedVolumes ?? []).map((v) => v.name)]);
    const out: string[] = [];
    for (const name of [...names].sort()) {
      const v = await this.#inspectVolume(name);
      if (v !== null && v.Labels?.[TWIN_LABEL] !== 'true') out.push(name);
    }
    return out;
  }

  /** What every container of this engine gets anyway (a spec asking for it asks for no privilege). */
  async engineDefaults(): Promise<EngineDefaults> {
    return { cgroupnsMode: (this.#facts ?? (await this.checkEngine())).cgroupnsDefault };
  }

  /** Why a twin must not be created from this spec on this engine under `policy` (specRefusals); empty when it may. */
  async specRefusals(spec: TwinSpec, trusted: boolean, policy: TwinPolicy = DEFAULT_TWIN_POLICY): Promise<string[]> {
    return specRefusals(spec, { trusted, policy, engine: await this.engineDefaults(), foreignVolumes: await this.#foreignVolumes(spec) });
  }

  /** Lookups of this engine's networks and volumes, each name asked once (one pass over many twins). */
  hostLookups(): HostLookups {
    const networks = new Map<string, Promise<{ subnets: string[] } | null>>();
    const volumes = new Map<string, Promise<VolumeFacts | null>>();
    const once = <T>(cache: Map<string, Promise<T>>, name: string, ask: () => Promise<T>): Promise<T> => {
      let p = cache.get(name);
      if (p === undefined) {
        p = ask();
        cache.set(name, p);
      }
      return p;
    };
    return {
      network: (name) => once(networks, name, () => this.#networkSubnets(name)),
      volume: (name) => once(volumes, name, () => this.#volumeFacts(name)),
    };
  }

  /** What this host lacks to create the spec's twin as the primary's container is (standby-checks.ts). */
  async hostProblems(spec: TwinSpec, policy: TwinPolicy = DEFAULT_TWIN_POLICY, lookups: HostLookups = this.hostLookups()): Promise<string[]> {
    return standbyProblems(spec, policy, lookups);
  }

  /** What is wrong now with the bind-mount sources of an existing container (missing, or resolving out of the
   *  policy's bind roots): Docker would mount a missing source as a new empty directory, and follows a symlink.
   *  `sources`: the container's bind sources as an inspect of it (twinState's `bindSources`) found them: a container's
   *  binds do not change, so only the file system is looked at now. */
  async bindSourceProblemsOf(idOrName: string, policy: TwinPolicy = DEFAULT_TWIN_POLICY, sources?: readonly string[]): Promise<string[]> {
    if (sources !== undefined) return bindSourceProblems(sources, policy);
    const inspect = await this.#inspect(idOrName);
    const found = bindSourcesOfInspect(inspect);
    if (found === null) throw new DockerApiError('inspect (HostConfig.Binds/Mounts did not parse)', undefined, { container: idOrName });
    return bindSourceProblems(found, policy);
  }

  /** Creates the twin (stopped, labelled, restart policy off, by image id, with every run setting of the spec) unless
   *  it exists. Refused with TwinSpecRefusedError, before anything is created or adopted, when the spec asks for what
   *  this host cannot recreate, for privileges while not trusted, or for what the policy refuses. An existing container
   *  of that name that is not a twin, or a twin of another image, is refused with TwinRefusedError. An existing twin
   *  is adopted whatever this host lacks now (the caller reports that); none is created while it lacks something
   *  (TwinHostNotReadyError). */
  async ensureTwin(spec: TwinSpec, opts: EnsureTwinOptions): Promise<TwinState> {
    const context: ErrorContext = { container: spec.name };
    const policy = opts.policy ?? DEFAULT_TWIN_POLICY;
    const refusals = await this.specRefusals(spec, opts.trusted, policy);
    if (refusals.length > 0) throw new TwinSpecRefusedError(refusals, context);
    // Two attempts: a concurrent creator can win between our inspect and our create (HTTP 409).
    for (let attempt = 0; attempt < 2; attempt++) {
      const existing = await this.#inspectOrNull(spec.name);
      if (existing !== null) {
        await this.#assertAdoptable(existing, spec);
        return this.#stateOf(existing);
      }
      const lacking = opts.hostProblems ?? (await this.hostProblems(spec, policy));
      if (lacking.length > 0) throw new TwinHostNotReadyError([...lacking], context);
      const image = await this.localImageFor(spec);
      if (image === null) throw new ImageMissingError(spec.imageId, context);
      await this.#ensureVolumes(spec, opts.group, opts.trusted);
      let id: string;
      try {
        // By this engine's id of the spec's image (another one when the primary's engine uses the other store).
        id = (await this.#docker.createContainer({ ...createOptionsFromSpec(spec, opts.group), Image: image })).id;
      } catch (cause) {
        if (statusOf(cause) === 409 && attempt === 0) continue;
        throw new DockerApiError('create twin', statusOf(cause), context, { cause });
      }
      await this.#connectAdditionalNetworks(id, spec);
      this.#log.info('twin created', { container: spec.name, imageId: spec.imageId });
      return this.twinState(spec.name);
    }
    throw new DockerApiError('create twin', 409, { ...context, hint: 'name kept conflicting' });
  }

  /** The networks beyond the one given at create, as on the primary; a twin that cannot join them all is removed
   *  again (no twin rather than one that differs). */
  async #connectAdditionalNetworks(id: string, spec: TwinSpec): Promise<void> {
    for (const [network, endpoint] of additionalNetworks(spec)) {
      try {
        // Docker's own JSON, nulls included (which dockerode's types do not admit).
        await this.#docker.getNetwork(network).connect({ Container: id, EndpointConfig: endpoint as object });
      } catch (cause) {
        await this.#docker.getContainer(id).remove({ force: true }).catch(() => undefined);
        throw new DockerApiError('connect twin to network', statusOf(cause), { container: spec.name, network }, { cause });
      }
    }
  }

  /** The subnets of a network of this engine, null when there is none of that name. */
  async #networkSubnets(name: string): Promise<{ subnets: string[] } | null> {
    let raw: unknown;
    try {
      raw = await this.#docker.getNetwork(name).inspect();
    } catch (cause) {
      if (statusOf(cause) === 404) return null;
      throw new DockerApiError('inspect network', statusOf(cause), { network: name }, { cause });
    }
    const network = this.#parse(networkInspectSchema, raw, 'inspect network', { network: name });
    // A network named by id prefix or by another network's id is not the one the spec names.
    if (network.Name !== name) return null;
    return { subnets: (network.IPAM?.Config ?? []).map((c) => c.Subnet ?? '').filter((s) => s !== '') };
  }

  /** A named volume of this engine, null when there is none of that name. */
  /** A named volume as the standby checks it (standby-checks.ts). */
  async #volumeFacts(name: string): Promise<VolumeFacts | null> {
    const volume = await this.#inspectVolume(name);
    return volume !== null && volume.Name === name ? { driver: volume.Driver, options: volume.Options ?? {} } : null;
  }


  async #assertAdoptable(existing: ContainerInspect, spec: TwinSpec): Promise<void> {
    const context: ErrorContext = { container: spec.name, id: existing.Id };
    if (existing.Config.Labels?.[TWIN_LABEL] !== 'true') {
      throw new TwinRefusedError(`a container named "${spec.name}" exists and is not a twin (no ${TWIN_LABEL}=true label)`, context);
    }
    if (!(await this.imageMatches(existing.Image, spec))) {
      throw new TwinRefusedError(`the twin's image ${existing.Image} differs from the primary's ${spec.imageId}`, context);
    }
  }

  async twinState(name: string): Promise<TwinState> {
    const inspect = await this.#inspectOrNull(name);
    return inspect === null ? { state: 'absent' } : this.#stateOf(inspect);
  }

  /** Starts the containers in parallel, at most `concurrency` at once; one result per name, in the given order.
   *  `beforeStart` runs in each one's slot right before its start: a reason it returns leaves the container stopped.
   *  `onResult` hears each result as it comes (a promotion's answer at its deadline says what started so far). */
  async startContainers(names: string[], concurrency: number, beforeStart?: StartCheck, onResult?: (r: StartResult) => void): Promise<StartResult[]> {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`Expected \`concurrency\` to be an integer >= 1, got ${concurrency}`);
    const queue = new PQueue({ concurrency });
    const results = await Promise.all(
      names.map((name) =>
        queue.add(async (): Promise<StartResult> => {
          const r = await this.#startOne(name, beforeStart);
          onResult?.(r);
          return r;
        }),
      ),
    );
    return results;
  }

  async #startOne(name: string, beforeStart: StartCheck | undefined): Promise<StartResult> {
    const t0 = performance.now();
    const ms = (): number => Math.round((performance.now() - t0) * 10) / 10;
    try {
      const refused = beforeStart === undefined ? null : await beforeStart(name);
      if (refused !== null) return { name, ok: false, ms: ms(), error: refused };
      await this.#docker.getContainer(name).start();
      return { name, ok: true, ms: ms() };
    } catch (cause) {
      const status = statusOf(cause);
      if (status === 304) return { name, ok: true, ms: ms(), alreadyRunning: true };
      return { name, ok: false, ms: ms(), error: status === 404 ? 'no such container' : messageOf(cause).trim() };
    }
  }

  /** Stops a container (SIGTERM, then SIGKILL after timeoutSeconds); a stopped one is fine. */
  async stopContainer(idOrName: string, timeoutSeconds = 10): Promise<void> {
    try {
      await this.#docker.getContainer(idOrName).stop({ t: timeoutSeconds });
    } catch (cause) {
      const status = statusOf(cause);
      if (status === 304) return;
      if (status === 404) throw new ContainerNotFoundError({ container: idOrName }, { cause });
      throw new DockerApiError('stop', status, { container: idOrName }, { cause });
    }
  }

  /** Force-removes every container of the engine (running or not, twin or not) with its anonymous volumes, in
   *  parallel. For tearing down a private engine: dockerd's own shutdown waits up to 10 s per container that
   *  ignores SIGTERM. Throws DockerApiError when the list fails; returns the containers it could not remove. */
  async removeAllContainers(): Promise<RemoveFailure[]> {
    let raw: unknown;
    try {
      raw = await this.#docker.listContainers({ all: true });
    } catch (cause) {
      throw new DockerApiError('list containers', statusOf(cause), {}, { cause });
    }
    const entries = this.#parse(listSchema, raw, 'list containers', {});
    const failures: RemoveFailure[] = [];
    await Promise.all(entries.map(async (c) => {
      try {
        await this.#docker.getContainer(c.Id).remove({ force: true, v: true });
      } catch (cause) {
        // Gone meanwhile (removed by someone else, or --rm): what was asked for holds.
        if (statusOf(cause) !== 404) failures.push({ id: c.Id, error: messageOf(cause).trim() });
      }
    }));
    return failures;
  }

  /** Names of the containers twinlayer created as twins of `group` (labels twinlayer.twin, twinlayer.group), running or not. */
  async listTwinNames(group: string): Promise<string[]> {
    let raw: unknown;
    try {
      raw = await this.#docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${TWIN_LABEL}=true`, `${GROUP_LABEL}=${group}`] }) });
    } catch (cause) {
      throw new DockerApiError('list twins', statusOf(cause), {}, { cause });
    }
    const entries = this.#parse(listSchema, raw, 'list twins', {});
    return entries.map((e) => (e.Names?.[0] ?? e.Id).replace(/^\//, '')).sort();
  }

  /** Every twin-labelled container of the engine (any group: ensureTwin adopts twins by name) as name → "id state",
   *  in one request: what changed since the last look shows as another fingerprint (removed, replaced, started). */
  async twinFingerprints(): Promise<Map<string, string>> {
    let raw: unknown;
    try {
      raw = await this.#docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${TWIN_LABEL}=true`] }) });
    } catch (cause) {
      throw new DockerApiError('list twins', statusOf(cause), {}, { cause });
    }
    const entries = this.#parse(listSchema, raw, 'list twins', {});
    return new Map(entries.map((e) => [(e.Names?.[0] ?? e.Id).replace(/^\//, ''), `${e.Id} ${e.State ?? '?'}`]));
  }

  /** `docker update --restart`: a twin runs with `no`; a promoted one gets its primary's policy back. */
  async setRestartPolicy(idOrName: string, policy: RestartPolicy): Promise<void> {
    const RestartPolicy = policy.name === 'on-failure' ? { Name: policy.name, MaximumRetryCount: policy.maximumRetryCount } : { Name: policy.name };
    try {
      await this.#docker.getContainer(idOrName).update({ RestartPolicy });
    } catch (cause) {
      if (statusOf(cause) === 404) throw new ContainerNotFoundError({ container: idOrName }, { cause });
      throw new DockerApiError('update restart policy', statusOf(cause), { container: idOrName, policy: policy.name }, { cause });
    }
  }

  /** The restart policy a container runs with now. */
  async restartPolicyOf(idOrName: string): Promise<RestartPolicy> {
    return specFromInspect(await this.#inspect(idOrName), new Date()).restartPolicy ?? { name: 'no', maximumRetryCount: 0 };
  }

  /** `docker rm` (stopped containers only; named volumes are kept). A missing container is fine. */
  async removeContainer(idOrName: string): Promise<void> {
    try {
      await this.#docker.getContainer(idOrName).remove({ force: false, v: false });
    } catch (cause) {
      if (statusOf(cause) === 404) return;
      throw new DockerApiError('remove', statusOf(cause), { container: idOrName }, { cause });
    }
  }

  /** The image a reference (name:tag or id) names on this engine, with its layers' diff ids; null when none. */
  async imageByRef(ref: string): Promise<{ id: string; diffIds: string[] } | null> {
    const inspect = await this.#inspectParsedOrNull(() => this.#docker.getImage(ref).inspect(), imageInspectSchema, 'inspect image', { imageId: ref });
    return inspect === null ? null : { id: inspect.Id, diffIds: inspect.RootFS?.Layers ?? [] };
  }

  /** The bytes of an image's layers, uncompressed (`docker image inspect` Size); null when there is no such image. */
  async imageSize(imageId: string): Promise<number | null> {
    const inspect = await this.#inspectParsedOrNull(() => this.#docker.getImage(imageId).inspect(), imageInspectSchema, 'inspect image', { imageId });
    return inspect?.Size ?? null;
  }

  /** True when an image with exactly this id (sha256:...) is on the engine. */
  async imagePresent(imageId: string): Promise<boolean> {
    try {
      const raw: unknown = await this.#docker.getImage(imageId).inspect();
      return this.#parse(imageInspectSchema, raw, 'inspect image', { imageId }).Id === imageId;
    } catch (cause) {
      if (statusOf(cause) === 404) return false;
      throw new DockerApiError('inspect image', statusOf(cause), { imageId }, { cause });
    }
  }

  /** The identity of an image of this engine (config digest, layer diff ids), which a change of image store keeps;
   *  null when there is no image of exactly this id. Under the containerd store the config digest is read from the
   *  manifest in containerd's content store (the manifest of the image's platform, for an index). */
  async imageIdentity(imageId: string): Promise<ImageIdentity | null> {
    const cached = this.#identities.get(imageId);
    if (cached !== undefined) return cached;
    const context: ErrorContext = { imageId };
    const inspect = await this.#inspectParsedOrNull(() => this.#docker.getImage(imageId).inspect(), imageInspectSchema, 'inspect image', context);
    if (inspect === null || inspect.Id !== imageId) return null;
    const facts = await this.#engineFacts();
    const configDigest = facts.store === 'overlay2' ? inspect.Id : await this.#configDigestInContentStore(inspect, context);
    const parsed = imageIdentitySchema.safeParse({ configDigest, diffIds: inspect.RootFS?.Layers ?? [] });
    if (!parsed.success) throw new DockerApiError('inspect image (identity did not parse)', undefined, context, { cause: parsed.error });
    this.#identities.set(imageId, parsed.data);
    return parsed.data;
  }

  async #configDigestInContentStore(inspect: { Id: string; Os?: string | undefined; Architecture?: string | undefined; Variant?: string | undefined }, context: ErrorContext): Promise<string> {
    const store = this.#containerd;
    if (store === undefined) throw new DockerApiError('image identity (the engine\'s containerd was not found)', undefined, context);
    let digest = inspect.Id;
    // An index names one manifest per platform; an index of indexes is not what Docker makes.
    for (let depth = 0; depth < 2; depth++) {
      let doc;
      try {
        doc = parseContentDocument(await contentBytes(store.endpoint, digest), digest);
      } catch (cause) {
        throw new DockerApiError('image identity (containerd content)', undefined, { ...context, digest }, { cause });
      }
      if (doc.kind === 'manifest') return doc.configDigest;
      const platform = { os: inspect.Os ?? 'linux', architecture: inspect.Architecture ?? '', variant: inspect.Variant };
      const next = manifestForPlatform(doc.manifests, platform);
      if (next === null) throw new DockerApiError(`image identity (the index has no manifest for ${platform.os}/${platform.architecture})`, undefined, { ...context, digest });
      digest = next;
    }
    throw new DockerApiError('image identity (an index nested in an index)', undefined, context);
  }

  /** This engine's image that is the spec's: its imageId when present here (and of the spec's identity when it
   *  carries one), else the image whose identity is the spec's (the primary runs on the other image store); null
   *  when there is none. */
  async localImageFor(spec: TwinSpec): Promise<string | null> {
    const want = spec.imageIdentity;
    const direct = await this.imageIdentity(spec.imageId);
    if (direct !== null && (want === undefined || sameIdentity(direct, want))) return spec.imageId;
    if (want === undefined) return null;
    return this.imageWithIdentity(want, { container: spec.name });
  }

  /** This engine's image of that identity (config digest and diff ids), on either image store; null when none. */
  async imageWithIdentity(want: ImageIdentity, context: ErrorContext = {}): Promise<string | null> {
    let raw: unknown;
    try {
      raw = await this.#docker.listImages();
    } catch (cause) {
      throw new DockerApiError('list images', statusOf(cause), context, { cause });
    }
    const ids = [...new Set(this.#parse(imageListSchema, raw, 'list images', context).map((i) => i.Id))].sort();
    for (const id of ids) {
      const have = await this.imageIdentity(id);
      if (have !== null && sameIdentity(have, want)) return id;
    }
    return null;
  }

  /** Whether an image of this engine (a twin's) is the spec's image: the same id, or the identity the spec carries. */
  async imageMatches(localImageId: string, spec: TwinSpec): Promise<boolean> {
    if (spec.imageIdentity === undefined) return localImageId === spec.imageId;
    const have = await this.imageIdentity(localImageId);
    return have !== null && sameIdentity(have, spec.imageIdentity);
  }

  /** `docker export`: the container's merged filesystem as a tar stream. */
  async exportContainer(idOrName: string): Promise<NodeJS.ReadableStream> {
    try {
      return await this.#docker.getContainer(idOrName).export();
    } catch (cause) {
      if (statusOf(cause) === 404) throw new ContainerNotFoundError({ container: idOrName }, { cause });
      throw new DockerApiError('export', statusOf(cause), { container: idOrName }, { cause });
    }
  }

  /** `docker save` of one image: a tar stream that loadImage (on another engine) turns into the same image id.
   *  `signal` aborts the request, and so does an engine that stops sending for `idleMs` (default 60 s) once its first
   *  byte came: a stalled save must not hold whoever waits for it (a demoted agent's stop) nor the saves queued behind
   *  it. The stream then fails with a DockerApiError. Before the first byte there is no such bound: a graphdriver
   *  engine (overlay2) exports the whole image into a temp dir before it answers, minutes for a large image on a slow
   *  disk; `signal` (stop, demotion) still ends that wait. */
  async saveImage(imageId: string, opts: { signal?: AbortSignal | undefined; idleMs?: number } = {}): Promise<NodeJS.ReadableStream> {
    const idleMs = opts.idleMs ?? 60_000;
    const context: ErrorContext = { imageId };
    const idle = new AbortController();
    const stalled = (): void => idle.abort(new DockerApiError('save image', undefined, context, { cause: new Error(`the engine sent nothing for ${idleMs} ms`) }));
    let timer: NodeJS.Timeout | undefined;
    const signal = opts.signal === undefined ? idle.signal : AbortSignal.any([opts.signal, idle.signal]);
    let res: NodeJS.ReadableStream;
    try {
      res = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
        // dockerode's image.get() takes no signal: the same request, dialled with one.
        this.#docker.modem.dial({ path: `/images/${imageId}/get`, method: 'GET', isStream: true, statusCodes: { 200: true, 500: 'server error' }, abortSignal: signal }, (err, data) => {
          if (err !== null) reject(err);
          else resolve(data as NodeJS.ReadableStream);
        });
      });
    } catch (cause) {
      clearTimeout(timer);
      throw new DockerApiError('save image', statusOf(cause), context, { cause: idle.signal.aborted ? idle.signal.reason : cause });
    }
    // Bytes pass through a tap that restarts the idle timer and has the reads freed as it goes; a failure of the
    // response (abort included) fails it.
    const tap = readRelease(SAVE_RELEASE_BYTES, () => {
      clearTimeout(timer);
      timer = setTimeout(stalled, idleMs).unref();
    });
    const onAbort = (): void => {
      (res as Readable).destroy(idle.signal.aborted ? (idle.signal.reason as Error) : new DockerApiError('save image', undefined, context, { cause: signal.reason }));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    streamPipeline(res, tap, () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
    return tap;
  }

  /** Where `docker load` writes an image's layers: the data root under overlay2, containerd's root (its content store
   *  and snapshots) under the containerd image store. */
  async imageStorage(): Promise<{ store: ImageStore; dir: string }> {
    const facts = await this.#engineFacts();
    const snapshotterRoot = this.#containerd?.endpoint.snapshotterRoot;
    if (facts.store === 'containerd' && snapshotterRoot !== undefined) return { store: 'containerd', dir: path.dirname(snapshotterRoot) };
    return { store: facts.store, dir: facts.dataRoot };
  }

  /** `docker load` from a tar stream made by saveImage; resolves when the engine has read it all. `signal` aborts the
   *  request (the engine drops what it read of an archive it did not get whole). */
  async loadImage(tar: NodeJS.ReadableStream, signal?: AbortSignal): Promise<void> {
    try {
      const res = await this.#docker.loadImage(tar, { quiet: true, ...(signal === undefined ? {} : { abortSignal: signal }) });
      // The engine reports per-line JSON progress; an error inside it still comes with HTTP 200.
      const body = await new Promise<string>((resolve, reject) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
        res.on('end', () => resolve(text));
        res.on('error', reject);
      });
      if (/"error(Detail)?"\s*:/.test(body)) throw new Error(body.trim().slice(0, 500));
    } catch (cause) {
      throw new DockerApiError('load image', statusOf(cause), {}, { cause });
    }
  }

  async #stateOf(inspect: ContainerInspect): Promise<TwinState> {
    const layers = await this.#layersOf(inspect);
    const context: ErrorContext = { container: inspect.Name.replace(/^\//, ''), id: inspect.Id };
    const dataRoot = await this.#dataRoot();
    const volumes: Record<string, string> = {};
    const volumeUsers: Record<string, string[]> = {};
    for (const m of inspect.Mounts ?? []) {
      if (m.Type !== 'volume' || m.Name === undefined || m.Name === '') continue;
      const others = (await this.#containersUsingVolume(m.Name)).filter((u) => u.id !== inspect.Id).map((u) => u.name).sort();
      if (others.length > 0) volumeUsers[m.Name] = others;
      if ((m.Driver ?? 'local') !== 'local') continue;
      // A volume with driver options is never a replicated one (hostProblems holds such a twin): nothing is staged
      // into it.
      const v = await this.#inspectVolume(m.Name);
      if (v !== null && Object.keys(v.Options ?? {}).length > 0) continue;
      volumes[m.Name] = await this.#volumeDir(m.Name, m.Source ?? '', dataRoot, context);
    }
    return {
      state: inspect.State.Running ? 'running' : 'stopped',
      id: inspect.Id,
      mounted: await this.#isMounted(layers),
      layers,
      imageId: inspect.Image,
      isTwin: inspect.Config.Labels?.[TWIN_LABEL] === 'true',
      specDigest: inspect.Config.Labels?.[SPEC_LABEL] ?? null,
      volumes,
      volumeUsers,
      bindSources: bindSourcesOfInspect(inspect),
    };
  }

  /** Whether a twin's layers are mounted now (it runs, is starting, or `docker export`/`cp` read it): the engine's
   *  mount table only, no API request. Staging asks right before its first write into the upper dir. */
  async layersMounted(layers: OverlayLayers): Promise<boolean> {
    return this.#isMounted(layers);
  }

  /** Whether the container's filesystem is mounted anywhere in the engine's mount namespace: at its merged dir (its
   *  rootfs while it runs, or while `docker export`/`cp` read it), or any overlay mount with its upper dir. */
  async #isMounted(layers: OverlayLayers): Promise<boolean> {
    const text = await readFile(this.#mountInfoPath, 'utf8');
    if (parseMountPoints(text).includes(layers.mergedDir)) return true;
    return overlayMounts(text).some((m) => {
      try {
        return parseOverlayOptions(m.superOptions).upperdir === layers.upperDir;
      } catch {
        return false; // an overlay without upper dir (read-only) is no container's
      }
    });
  }

  async #layersOf(inspect: ContainerInspect): Promise<OverlayLayers> {
    const layers = await this.#layersOrGone(inspect);
    if (layers === null) throw new ContainerNotFoundError({ container: inspect.Name.replace(/^\//, ''), id: inspect.Id, hint: 'removed while its layers were looked up' });
    return layers;
  }

  /** The container's layers, checked on disk; null when containerd has no snapshot of it (removed meanwhile). */
  async #layersOrGone(inspect: ContainerInspect): Promise<OverlayLayers | null> {
    const context: ErrorContext = { container: inspect.Name.replace(/^\//, ''), id: inspect.Id };
    const facts = await this.#engineFacts();
    const layers = facts.store === 'overlay2'
      ? layersFromGraphDriver(inspect.GraphDriver, facts.dataRoot, context)
      : await this.#snapshotLayers(inspect, facts.dataRoot, context);
    if (layers === null) return null;
    try {
      await verifyUpperDirOnDisk(layers.upperDir, context);
    } catch (err) {
      // Its upper dir went with it: removed since the inspect.
      if ((await this.#inspectOrNull(inspect.Id)) === null) return null;
      throw err;
    }
    return layers;
  }

  /** The containerd image store: a running container's overlay options from the mount of its rootfs
   *  (`<data root>/rootfs/overlayfs/<id>`), a stopped one's from containerd (`ctr snapshots mounts`, which mounts
   *  nothing); null when containerd has no snapshot keyed by the container's id. */
  async #snapshotLayers(inspect: ContainerInspect, dataRoot: string, context: ErrorContext): Promise<OverlayLayers | null> {
    const store = this.#containerd;
    if (store === undefined) throw new LayerResolveError('the engine\'s containerd was not found (checkEngine)', context);
    if (inspect.GraphDriver.Name !== 'overlayfs') throw new LayerResolveError(`the container's snapshotter is "${inspect.GraphDriver.Name}", not overlayfs`, context);
    if (!/^[0-9a-f]{64}$/.test(inspect.Id)) throw new LayerResolveError(`container id "${inspect.Id}" is not 64 hex digits`, context);
    const mergedDir = path.join(dataRoot, 'rootfs', 'overlayfs', inspect.Id);
    let options: string | null = null;
    if (inspect.State.Running) {
      const mount = overlayMounts(await readFile(this.#mountInfoPath, 'utf8')).filter((m) => m.mountPoint === mergedDir);
      // Stopped since the inspect: no mount any more, containerd is asked below. Two mounts at one point: refused.
      if (mount.length > 1) throw new LayerResolveError(`${mount.length} overlay mounts at ${mergedDir}`, { ...context, path: mergedDir });
      options = mount[0]?.superOptions ?? null;
    }
    options ??= this.#snapshotOptions.get(inspect.Id) ?? null;
    if (options === null) {
      options = await snapshotOverlayOptions(store.endpoint, inspect.Id, context);
      if (options !== null) {
        if (this.#snapshotOptions.size >= 4096) this.#snapshotOptions.clear();
        this.#snapshotOptions.set(inspect.Id, options);
      }
    }
    if (options === null) {
      // Gone from Docker too: removed meanwhile. Still there: this containerd is not the one the engine runs on (two
      // containerd builds of one revision cannot be told apart by version).
      if ((await this.#inspectOrNull(inspect.Id)) === null) return null;
      throw new LayerResolveError(`containerd at ${store.endpoint.socketPath} (namespace ${store.endpoint.namespace}) has no snapshot of the container; is it the engine's containerd?`, {
        ...context, hint: 'set containerdSocket to the containerd dockerd runs on',
      });
    }
    let parsed;
    try {
      parsed = parseOverlayOptions(options);
    } catch (err) {
      throw new LayerResolveError(`the snapshot's overlay options: ${err instanceof Error ? err.message : String(err)}`, context);
    }
    return layersFromOverlayOptions(parsed, store.endpoint.snapshotterRoot, mergedDir, store.overlayDefaults, context);
  }

  async #inspect(idOrName: string): Promise<ContainerInspect> {
    const inspect = await this.#inspectOrNull(idOrName);
    if (inspect === null) throw new ContainerNotFoundError({ container: idOrName });
    return inspect;
  }

  async #inspectOrNull(idOrName: string): Promise<ContainerInspect | null> {
    return this.#inspectParsedOrNull(() => this.#docker.getContainer(idOrName).inspect(), inspectSchema, 'inspect', { container: idOrName });
  }

  /** An inspect answer parsed with `schema`; null when the engine answers 404, DockerApiError for any other failure. */
  async #inspectParsedOrNull<T>(inspect: () => Promise<unknown>, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: Error } }, what: string, context: ErrorContext): Promise<T | null> {
    let raw: unknown;
    try {
      raw = await inspect();
    } catch (cause) {
      if (statusOf(cause) === 404) return null;
      throw new DockerApiError(what, statusOf(cause), context, { cause });
    }
    return this.#parse(schema, raw, what, context);
  }

  #parse<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: Error } }, raw: unknown, what: string, context: ErrorContext): T {
    const result = schema.safeParse(raw);
    if (!result.success) throw new DockerApiError(`${what} (response did not parse)`, undefined, context, { cause: result.error });
    return result.data;
  }
}

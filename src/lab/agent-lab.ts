// Two lab hosts, each running `twinlayer agent` beside its own Docker engine, keepalived on both calling notify.sh
// for every state, the embedded S3 server in the root namespace reached through one relay per host (which can be
// cut to take a host off the bucket). A protected busybox httpd (`--network host --restart unless-stopped`) serves
// a page on the VIP. The set-up shared by `twinlayer demo`, `npm run bench:failover` and
// test/e2e/agent-failover.test.ts; the scenarios themselves are the caller's.
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { S3RVER_CREDENTIALS, startS3Server, type S3Server } from '../s3server/index.js';
import { Bucket, S3BlobStore, type Generation } from '../store/index.js';
import { copyImage, importBusyboxImage } from './busybox-image.js';
import { dockerCli, type Engine, type EngineKind } from './engine.js';
import { twinlayerEngineEnv } from './engine-access.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { GroupKeys } from './group-keys.js';
import { createLab, type Lab, type LabProcess, type RootForward } from './index.js';
import { waitFor } from './wait.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const AGENT_LAB_BUCKET = 'twinlayer-lab';
export const AGENT_LAB_GROUP = 'lab';
/** The protected container and the port its page is served on (all addresses, so also the VIP). */
export const WEB = 'web';
export const WEB_PORT = 8080;
const HOOK = '127.0.0.1:7450';

/** The part of an agent's GET /v1/status the lab reads (zod: it is another process's output). */
const statusSchema = z.looseObject({
  role: z.enum(['primary', 'standby', 'promoting', 'demoting']),
  host: z.string(),
  generation: z.number().nullable(),
  vrrp: z.looseObject({ state: z.string().nullable(), at: z.string().nullable() }),
  fenced: z.string().nullable(),
  claim: z.looseObject({ status: z.string(), generation: z.number() }).nullable(),
  lastPromotion: z.looseObject({
    outcome: z.string(),
    startedAt: z.string(),
    ms: z.number(),
    start: z.looseObject({ containers: z.array(z.looseObject({ name: z.string(), ok: z.boolean() })) }).nullable(),
  }).nullable(),
  divergent: z.array(z.looseObject({ container: z.string(), key: z.string() })),
  containers: z.array(z.looseObject({
    name: z.string(),
    stagedSeq: z.number().optional(),
    latestSeq: z.number().nullable().optional(),
    twin: z.string().optional(),
    lastSeq: z.number().optional(),
    consecutiveFailures: z.number().optional(),
    lastError: z.string().nullable().optional(),
    /** The standby's one reason the container is not as it should be (refused, held, blocked, failed). */
    reason: z.string().optional(),
    lagMs: z.number().optional(),
    pendingSince: z.string().nullable().optional(),
  })),
  lastError: z.string().nullable(),
  memory: z.object({
    rssMb: z.number(), heapUsedMb: z.number(), heapTotalMb: z.number(), externalMb: z.number(),
    afterMajorGc: z.object({ count: z.number(), at: z.string(), heapMb: z.number() }).optional(),
  }).optional(),
});
export type AgentStatusView = z.infer<typeof statusSchema>;

/** One JSON log line of an agent, as far as the lab reads it. */
const logLineSchema = z.looseObject({ time: z.string(), level: z.string(), msg: z.string() });
export type AgentLogLine = z.infer<typeof logLineSchema> & Record<string, unknown>;

export interface AgentRun {
  host: string;
  proc: LabProcess;
  /** Epoch ms when the agent process was spawned. */
  spawnedAt: number;
  /** Its JSON log lines so far. */
  lines: AgentLogLine[];
  /** The first line matching, bounded; rejects when the agent exits first. */
  waitForLine(what: string, match: (l: AgentLogLine) => boolean, timeoutMs: number): Promise<AgentLogLine>;
}

export interface AgentLabOptions {
  log?: (line: string) => void;
  /** keepalived's advert_int (s); default 0.1. */
  advertIntSec?: number;
  /** Every wait's bound (ms); default 30 s. */
  waitMs?: number;
  /** Called with every agent log line (parsed), e.g. to build a timeline. */
  onAgentLine?: (host: string, line: AgentLogLine) => void;
  /** More TWINLAYER_* settings for the agents. */
  agentEnv?: Record<string, string>;
  /** Put a fault proxy (fault-proxy.ts) between each host's relay and the S3 server: `faultProxy(host)`. */
  faultProxies?: boolean;
  /** Parent dir of a host's engine (data root included), e.g. a small file system of the caller's; default the lab dir. */
  engineBaseDirs?: Partial<Record<string, string>>;
  /** Each engine's bound for /_ping at start and restart (default 30 s): dockerd answers only once it has restored
   *  its containers, which takes longer with many of them on a busy machine. */
  engineStartTimeoutMs?: number;
  /** Each host's engine kind (engine.ts), by lab host name; default overlay2. */
  engineKinds?: Partial<Record<string, EngineKind>>;
  /** false: no busybox `web` container (the caller protects its own, e.g. the service labs); default true. */
  busyboxWeb?: boolean;
}

export class AgentLab {
  readonly lab: Lab;
  readonly bucket: Bucket;
  /** Each host's signing key; every agent trusts all of them (and the lab's own view of the bucket does). */
  readonly keys: GroupKeys;
  readonly token = randomBytes(16).toString('hex');
  /** Host names: a (keepalived's preferred MASTER at the start) and b. */
  readonly hosts: readonly [string, string];
  readonly #o: AgentLabOptions;
  readonly #s3: S3Server;
  readonly #store: S3BlobStore;
  readonly #forwards: ReadonlyMap<string, RootForward>;
  readonly #proxies: ReadonlyMap<string, FaultProxy>;
  readonly #agents = new Map<string, AgentRun>();
  readonly #waitMs: number;

  private constructor(init: { lab: Lab; s3: S3Server; store: S3BlobStore; keys: GroupKeys; forwards: Map<string, RootForward>; proxies: Map<string, FaultProxy>; opts: AgentLabOptions }) {
    this.lab = init.lab;
    this.#s3 = init.s3;
    this.#store = init.store;
    this.keys = init.keys;
    this.bucket = new Bucket(init.store, { prefix: 'twinlayer', group: AGENT_LAB_GROUP, signatures: init.keys.signatures() });
    this.#forwards = init.forwards;
    this.#proxies = init.proxies;
    this.#o = init.opts;
    this.#waitMs = init.opts.waitMs ?? 30_000;
    const [a, b] = init.lab.hosts;
    this.hosts = [a?.name ?? 'a', b?.name ?? 'b'];
  }

  /**
   * Builds everything up to the protected container running on host a; no agent and no keepalived yet
   * (startAgent, startKeepalived). On failure, tears down what it made.
   */
  static async create(opts: AgentLabOptions = {}): Promise<AgentLab> {
    const log = opts.log ?? ((): void => undefined);
    const lab = await createLab({ hosts: ['a', 'b'], log });
    let s3: S3Server | null = null;
    const proxies = new Map<string, FaultProxy>();
    try {
      await lab.startEngines({
        ...(opts.engineBaseDirs ? { baseDirs: opts.engineBaseDirs } : {}), ...(opts.engineKinds ? { kinds: opts.engineKinds } : {}),
        ...(opts.engineStartTimeoutMs === undefined ? {} : { startTimeoutMs: opts.engineStartTimeoutMs }),
      });
      s3 = await startS3Server({ dir: join(lab.dir, 's3'), buckets: [AGENT_LAB_BUCKET], silent: true });
      const forwards = new Map<string, RootForward>();
      for (const h of lab.hosts) {
        let port = s3.port;
        if (opts.faultProxies === true) {
          const proxy = await startFaultProxy(s3.endpoint);
          proxies.set(h.name, proxy);
          port = proxy.port;
        }
        forwards.set(h.name, await lab.forwardToRoot(port));
      }
      const [a, b] = lab.hosts;
      if (!a?.engine || !b?.engine) throw new Error('lab engines did not start');
      await importBusyboxImage(a.engine.socketPath, 'tl-web:lab');
      await copyImage(a.engine.socketPath, b.engine.socketPath, 'tl-web:lab');
      // httpd under a shell that ends on SIGTERM, as a real service does (PID 1 has no default handler: a bare httpd
      // would sit out docker stop's whole grace period).
      if (opts.busyboxWeb !== false) await dockerCli(a.engine, ['run', '-d', '--name', WEB, '--label', 'twinlayer.enable=true', '--restart', 'unless-stopped', '--network', 'host',
        'tl-web:lab', 'sh', '-c', `trap 'exit 0' TERM; httpd -f -p ${WEB_PORT} -h /var/www & wait`]);
      // keepalived insists that notify scripts are root-owned and not writable by others: a copy in the lab dir, and
      // per host a wrapper naming that host's VRRP state file (its /run/twinlayer/vrrp-state).
      const notify = join(lab.dir, 'notify.sh');
      await copyFile(join(repoRoot, 'infra', 'keepalived', 'notify.sh'), notify);
      await chmod(notify, 0o755);
      for (const h of lab.hosts) {
        await writeFile(join(lab.dir, `notify-${h.name}.sh`), `#!/bin/sh\nTWINLAYER_VRRP_STATE_FILE='${vrrpStateFile(lab, h.name)}' exec '${notify}' "$@"\n`, { mode: 0o755 });
      }
      // The lab's own view of the bucket (never the agents'): s3rver can leave a GET racing a PUT of the same key
      // unanswered for seconds; a short bound and a retry keep the observer from lagging behind what it observes.
      const keys = await GroupKeys.create(join(lab.dir, 'keys'), lab.hosts.map((h) => agentHostId(h.name)));
      const store = new S3BlobStore({ bucket: AGENT_LAB_BUCKET, region: 'us-east-1', endpoint: s3.endpoint, pathStyle: true, credentials: S3RVER_CREDENTIALS, smallRequestTimeoutMs: 300 });
      return new AgentLab({ lab, s3, store, keys, forwards, proxies, opts });
    } catch (err) {
      for (const p of proxies.values()) await p.close().catch(() => undefined);
      await s3?.close().catch(() => undefined);
      await lab.destroy().catch((e: unknown) => log(`cleanup after a failed set-up: ${String(e)}`));
      throw err;
    }
  }

  engine(host: string): Engine {
    const e = this.lab.hosts.find((h) => h.name === host)?.engine;
    if (e === undefined) throw new Error(`no engine on lab host ${host}`);
    return e;
  }

  other(host: string): string {
    return host === this.hosts[0] ? this.hosts[1] : this.hosts[0];
  }

  hostId(host: string): string {
    return agentHostId(host);
  }

  agent(host: string): AgentRun | undefined {
    return this.#agents.get(host);
  }

  /** Starts `twinlayer agent` inside the host's namespace; resolves once it logged "agent started" (its first role settled). */
  async startAgent(host: string): Promise<AgentRun> {
    const engine = this.engine(host);
    const fwd = this.#forwards.get(host);
    if (fwd === undefined) throw new Error(`no bucket path for lab host ${host}`);
    const env: Record<string, string> = {
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: 'us-east-1',
      TWINLAYER_ENDPOINT: `http://${fwd.host}:${fwd.port}`, TWINLAYER_BUCKET: AGENT_LAB_BUCKET, TWINLAYER_PATH_STYLE: 'true',
      TWINLAYER_GROUP: AGENT_LAB_GROUP, TWINLAYER_HOST_ID: this.hostId(host),
      ...twinlayerEngineEnv(engine), TWINLAYER_STATE_DIR: join(this.lab.dir, `state-${host}`),
      TWINLAYER_HOOK_LISTEN: HOOK, TWINLAYER_HOOK_TOKEN: this.token, TWINLAYER_VRRP_STATE_FILE: vrrpStateFile(this.lab, host),
      TWINLAYER_POLL_INTERVAL_MS: '50', TWINLAYER_FENCE_INTERVAL_MS: '200', TWINLAYER_BACKUP_SETTLE_MS: '300', TWINLAYER_STOP_TIMEOUT_SECONDS: '1',
      TWINLAYER_RECONCILE_INTERVAL_MS: '5000', TWINLAYER_LOG_LEVEL: 'info',
      ...this.keys.env(this.hostId(host)),
      ...this.#o.agentEnv,
    };
    const lines: AgentLogLine[] = [];
    const waiters = new Set<{ match: (l: AgentLogLine) => boolean; resolve: (l: AgentLogLine) => void }>();
    const spawnedAt = Date.now();
    const proc = await this.lab.spawn(host, [process.execPath, join(repoRoot, 'bin', 'twinlayer.js'), 'agent'], {
      env,
      onLine: (text) => {
        let parsed: AgentLogLine;
        try {
          const r = logLineSchema.safeParse(JSON.parse(text));
          if (!r.success) return;
          parsed = r.data;
        } catch {
          return;
        }
        lines.push(parsed);
        this.#o.onAgentLine?.(host, parsed);
        for (const w of [...waiters]) {
          if (w.match(parsed)) {
            waiters.delete(w);
            w.resolve(parsed);
          }
        }
      },
    });
    const run: AgentRun = {
      host, proc, spawnedAt, lines,
      waitForLine: (what, match, timeoutMs) => {
        const found = lines.find(match);
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          const w = {
            match,
            resolve: (l: AgentLogLine): void => {
              clearTimeout(timer);
              resolve(l);
            },
          };
          const timer = setTimeout(() => {
            waiters.delete(w);
            reject(new Error(`agent on ${host}: no log line "${what}" within ${timeoutMs} ms; last lines:\n${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
          }, timeoutMs);
          waiters.add(w);
          void proc.exited.then((x) => {
            if (!waiters.has(w)) return;
            waiters.delete(w);
            clearTimeout(timer);
            reject(new Error(`agent on ${host} exited (${x.code ?? x.signal ?? '?'}) before "${what}"; last lines:\n${lines.slice(-10).map((l) => JSON.stringify(l)).join('\n')}`));
          });
        });
      },
    };
    this.#agents.set(host, run);
    await run.waitForLine('agent started', (l) => l.msg === 'agent started', this.#waitMs);
    return run;
  }

  /** keepalived on both hosts, a first and alone until it holds the VIP (so a is MASTER), notify.sh for every state. */
  async startKeepalived(): Promise<void> {
    await this.lab.startKeepalived({
      notify: Object.fromEntries(this.hosts.map((h) => [h, join(this.lab.dir, `notify-${h}.sh`)])),
      advertIntSec: this.#o.advertIntSec ?? 0.1,
      // keepalived passes its environment to notify scripts; the env file is never the machine's.
      env: { TWINLAYER_HOOK_URL: `http://${HOOK}/v1/vrrp`, TWINLAYER_HOOK_TOKEN: this.token, TWINLAYER_ENV_FILE: '/nonexistent', TWINLAYER_HOOK_TIMEOUT: '20' },
    });
  }

  /** The agent's GET /v1/status, asked inside the host's namespace; null when it does not answer. */
  async status(host: string): Promise<AgentStatusView | null> {
    const r = await this.statusOrWhy(host);
    return 'status' in r ? r.status : null;
  }

  /** The agent's status, or why there is none (for a failure message). */
  async statusOrWhy(host: string): Promise<{ status: AgentStatusView } | { why: string }> {
    const r = await this.lab.exec(host, ['curl', '-s', '--max-time', '2', '-w', '\n%{http_code}', '-H', `authorization: Bearer ${this.token}`, `http://${HOOK}/v1/status`], { timeoutMs: 5_000 });
    if (r.code !== 0) return { why: `curl of the hook's /v1/status exited ${String(r.code)}${r.code === 28 ? ' (no answer within 2 s)' : ''}` };
    const cut = r.stdout.lastIndexOf('\n');
    const [body, code] = [r.stdout.slice(0, cut), r.stdout.slice(cut + 1).trim()];
    if (code !== '200') return { why: `the hook answered HTTP ${code}: ${body.slice(0, 300)}` };
    try {
      const parsed = statusSchema.safeParse(JSON.parse(body));
      return parsed.success ? { status: parsed.data } : { why: `the status did not parse: ${parsed.error.message.slice(0, 300)}` };
    } catch (err) {
      return { why: `the status is not JSON: ${String(err)}` };
    }
  }

  /** Why `host` is not (yet) the standby staged to the head: '' once it is. For failure messages. */
  async standbyGap(host: string): Promise<string> {
    const head = await this.head();
    const r = await this.statusOrWhy(host);
    if (!('status' in r)) return `no status from ${host}: ${r.why}`;
    const parts = standbyGapTo(r.status, head);
    if (parts.length > 0 && r.status.lastError !== null) parts.push(`lastError ${r.status.lastError.slice(0, 300)}`);
    return parts.join('; ');
  }

  /** The page on the VIP, fetched from the bridge namespace (a neutral client); null when nothing answers 200. A
   *  short connect timeout: right after a kill the client's ARP entry still names the dead host, whose SYNs vanish,
   *  and a longer wait would blur the moment the new MASTER answers (its gratuitous ARP updates the entry). */
  async fetchPage(): Promise<string | null> {
    const r = await this.lab.exec(this.lab.bridgeNetns, ['curl', '-s', '--fail', '--connect-timeout', '0.1', '--max-time', '0.5', `http://${this.lab.vip}:${WEB_PORT}/index.html`], { timeoutMs: 3_000 });
    return r.code === 0 ? r.stdout : null;
  }

  /** Writes `content` to `path` inside the protected container on `host`. */
  async write(host: string, path: string, content: string): Promise<void> {
    if (/['\n]/.test(content) || !/^\/[A-Za-z0-9/._-]+$/.test(path)) throw new Error(`write: content without quotes/newlines and a plain path, got ${JSON.stringify([path, content])}`);
    await dockerCli(this.engine(host), ['exec', WEB, 'sh', '-c', `echo '${content}' > ${path}`]);
  }

  /** The newest generation and its head's seq of the protected container (0 before any commit). */
  async head(): Promise<{ generation: number; seq: number; containers: Record<string, number> }> {
    const g = (await this.bucket.listGenerations()).at(-1);
    if (g === undefined) return { generation: 0, seq: 0, containers: {} };
    const head = await this.bucket.readHead(g);
    if (head.status !== 'ok') return { generation: g, seq: 0, containers: {} };
    return { generation: g, seq: head.head.containers[WEB] ?? 0, containers: { ...head.head.containers } };
  }

  /** Waits until the head of the newest generation moved past `after` for `container` (default the busybox web); returns its seq. */
  waitInBucket(after: { generation: number; containers: Record<string, number> }, what: string, container = WEB): Promise<{ generation: number; seq: number }> {
    const was = after.containers[container] ?? 0;
    return waitFor(`${what} in the bucket`, this.#waitMs, async () => {
      const h = await this.head();
      const seq = h.containers[container] ?? 0;
      return h.generation > after.generation || (h.generation === after.generation && seq > was) ? { generation: h.generation, seq } : undefined;
    }, 10);
  }

  /** Resolves once the primary `host`'s pusher has nothing of `container` waiting or in flight (its status: lag 0,
   *  nothing pending): every commit of the writes before is in the bucket, not only the first (a leading flush may
   *  publish while its writer is still at it). */
  async shipped(host: string, what: string, container = WEB): Promise<void> {
    await waitFor(`${what} shipped by ${host}`, this.#waitMs, async () => {
      const c = (await this.status(host))?.containers.find((x) => x.name === container);
      if (c === undefined || c.lagMs !== 0 || c.pendingSince !== null) return undefined;
      // And the head names its last commit (a head write may still be retried after the commit is out).
      return ((await this.head()).containers[container] ?? 0) >= (c.lastSeq ?? 0) ? true : undefined;
    }, 10);
  }

  /** Epoch ms of the first full checkpoint of `container` in generation `g`; undefined while there is none. */
  async firstFullAt(g: number, container = WEB): Promise<number | undefined> {
    for await (const item of this.bucket.listRecords(g as Generation, 0)) {
      if ('record' in item && item.record.container === container && item.record.kind === 'full') return Date.parse(item.record.publishedAt);
    }
    return undefined;
  }

  /**
   * The standby on `host` has converged: role standby, following the newest generation, every container of the
   * head (read first) staged up to the head's seq in a stopped twin. Returns the status, or undefined.
   */
  async converged(host: string): Promise<AgentStatusView | undefined> {
    const head = await this.head();
    const s = await this.status(host);
    return s !== null && standbyGapTo(s, head).length === 0 ? s : undefined;
  }

  /** The fault proxy on the host's path to the bucket (AgentLabOptions.faultProxies). */
  faultProxy(host: string): FaultProxy {
    const p = this.#proxies.get(host);
    if (p === undefined) throw new Error(`no fault proxy for lab host ${host} (create the lab with faultProxies)`);
    return p;
  }

  /** Cuts (or heals) the host's path to the bucket: its relay refuses connections. */
  async cutBucket(host: string): Promise<void> {
    await this.#forwards.get(host)?.refuse();
  }

  async healBucket(host: string): Promise<void> {
    await this.#forwards.get(host)?.accept();
  }

  /** SIGKILL of the whole host: agent, keepalived, dockerd, containerd, shims, containers (lab.killHost). */
  async kill(host: string): Promise<void> {
    await this.lab.killHost(host);
    this.#agents.delete(host);
  }

  /**
   * Back as after a reboot: network up, the engine restarted on its data root (its restart policies bring the
   * stale container back), the host's /run emptied (the VRRP state file, unless `keepVrrpStateFile`: a host whose
   * agent and keepalived died but whose /run survived), its path to the bucket healed.
   * The caller then starts the agent and keepalived (startAgent, lab.startKeepalivedOn), in that order.
   */
  async revive(host: string, opts: { keepVrrpStateFile?: boolean } = {}): Promise<void> {
    await this.lab.reviveHost(host);
    if (opts.keepVrrpStateFile !== true) {
      await rm(vrrpStateFile(this.lab, host), { force: true });
      await rm(`${vrrpStateFile(this.lab, host)}.lock`, { force: true });
    }
    await this.healBucket(host);
  }

  /** Epoch ms when container `ref` on `host` last started (Docker's State.StartedAt). */
  async startedAt(host: string, ref: string = WEB): Promise<number> {
    const text = (await dockerCli(this.engine(host), ['inspect', '-f', '{{.State.StartedAt}}', ref])).trim();
    const at = Date.parse(text);
    if (!Number.isFinite(at)) throw new Error(`docker inspect ${ref} on ${host}: no StartedAt (got ${JSON.stringify(text)})`);
    return at;
  }

  /** The id of container `ref` (name or id) on `host` while it runs; null when it is stopped or absent. */
  async runningId(host: string, ref: string = WEB): Promise<string | null> {
    const [running, id] = (await dockerCli(this.engine(host), ['inspect', '-f', '{{.State.Running}} {{.Id}}', ref]).catch(() => '')).trim().split(' ');
    return running === 'true' && id !== undefined ? id : null;
  }

  /** Closes the S3 server and destroys the lab; a teardown failure is reported, never hidden. */
  async destroy(): Promise<void> {
    const problems: string[] = [];
    this.#store.destroy();
    for (const p of this.#proxies.values()) await p.close().catch((err: unknown) => problems.push(String(err)));
    await this.#s3.close().catch((err: unknown) => problems.push(String(err)));
    await this.lab.destroy().catch((err: unknown) => problems.push(String(err)));
    if (problems.length > 0) throw new Error(`agent lab teardown: ${problems.join('; ')}`);
  }
}

function agentHostId(host: string): string {
  return `host-${host}`;
}

function vrrpStateFile(lab: Lab, host: string): string {
  return join(lab.dir, `vrrp-state-${host}`);
}

/** The newest generation's head as the lab reads it: each container's seq. */
export interface HeadSeqs { generation: number; containers: Record<string, number> }

/**
 * Why status `s` is not the standby of `head`'s generation with every container of `head` staged up to its seq in a
 * stopped twin: [] once it is. `head` is read before the status, and writes may go on meanwhile: "staged up to the
 * head read just before", not "at the head". One judgement for the lab's convergence waits and failure messages.
 */
export function standbyGapTo(s: AgentStatusView, head: HeadSeqs): string[] {
  const parts: string[] = [];
  if (s.role !== 'standby') parts.push(`role ${s.role}`);
  if (s.generation !== head.generation) parts.push(`generation ${String(s.generation)} (head ${head.generation})`);
  if (Object.keys(head.containers).length === 0) parts.push(`the head of generation ${head.generation} names no container yet`);
  const behind = Object.entries(head.containers).flatMap(([name, seq]) => {
    const c = s.containers.find((x) => x.name === name);
    if (c === undefined) return [`${name} absent`];
    // The standby's reason for it, when it has one: a convergence timeout then says why, not only how far behind.
    const why = c.reason === undefined ? '' : ` (${c.reason})`;
    return (c.stagedSeq ?? 0) < seq || c.twin !== 'stopped' ? [`${name} staged ${String(c.stagedSeq ?? '?')} of ${seq}, twin ${c.twin ?? '?'}${why}`] : [];
  });
  if (behind.length > 0) parts.push(`${behind.length} container(s) not at the head: ${behind.slice(0, 8).join('; ')}${behind.length > 8 ? '; …' : ''}`);
  return parts;
}

// The failover-and-failback scenario of `twinlayer demo`, test/e2e/failover.test.ts and `npm run bench:failover`:
// `twinlayer agent` on both lab hosts, keepalived on both (notify.sh for every state), a protected busybox httpd on
// host a. A few versions of a page are written, a is killed (SIGKILL of everything), b takes the VIP and its agent
// promotes; a comes back as after a reboot (its Docker restarts the stale container), its agent stops it and makes
// it b's standby; a version is written on b; then b is killed and a takes over again. Returns the timeline and
// the figures; tears the lab down in any case.
import { randomBytes } from 'node:crypto';
import { AgentLab, WEB, type AgentLogLine, type AgentStatusView } from './agent-lab.js';
import type { EngineKind } from './engine.js';
import { waitFor } from './wait.js';

export interface TimelineEvent { event: string; ms: number }

/** One failover: the primary `from` killed, `to` serving. */
export interface FailoverLeg {
  from: string;
  to: string;
  /** What the VIP served first after the kill (it must be the last version in the bucket). */
  served: string;
  lastInBucket: string;
  /** The generation `to` claimed. */
  generation: number;
  /** kill → keepalived made `to` MASTER (notify.sh's stamp). */
  killToMasterMs: number;
  /** kill → the last promoted container started on `to` (Docker's State.StartedAt). */
  killToTwinStartedMs: number;
  /** kill → the first answer of the VIP with the last version. */
  killToFirstGoodMs: number;
  /** MASTER (notify.sh's stamp) → the first full checkpoint of every promoted container in the bucket (publishedAt). */
  masterToFullCheckpointMs: number;
}

/** The old primary coming back as after a reboot. */
export interface Rejoin {
  host: string;
  /** The stale container was running again (Docker's restart policy) before the agent started. */
  staleRestartedByDocker: boolean;
  /** The agent's first log line → the stale container seen stopped (an upper bound). */
  agentStartToStaleStoppedMs: number;
  /** The same from the agent process's spawn (with Node's and the TypeScript loader's start). */
  agentSpawnToStaleStoppedMs: number;
  /** Agent spawned → role standby, following the newest generation, its twin staged to the head. */
  agentStartToConvergedMs: number;
  /** The same from the agent's first log line (without Node's and the TypeScript loader's start). */
  agentFirstLineToConvergedMs: number;
  /** The VIP stayed on the new primary (nopreempt). */
  vipStayed: boolean;
  divergent: { container: string; key: string }[];
}

export interface FailoverResult {
  timeline: TimelineEvent[];
  versions: string[];
  failover: FailoverLeg;
  rejoin: Rejoin;
  failback: FailoverLeg;
  /** GET /v1/status of the agent serving at the end. */
  finalStatus: AgentStatusView | null;
}

export interface FailoverOptions {
  /** Progress, one line per timeline event as it is recorded (and the lab's own lines, prefixed "  lab:"). */
  log?: (line: string) => void;
  /** Versions written on a before the first kill; default 3. */
  versions?: number;
  advertIntSec?: number;
  /** Bound for each wait (ms); default 30 s. */
  waitMs?: number;
  /** Host a's and host b's engine kinds (engine.ts); default overlay2 on both. */
  engineKinds?: readonly [EngineKind, EngineKind];
}

/** The timeline lines an agent log line gives (null: not shown). */
function agentEvent(host: string, l: AgentLogLine): string | null {
  const f = (k: string): unknown => l[k];
  switch (l.msg) {
    case 'vrrp notification':
      return f('offer') === 'accepted' ? `${host}: keepalived ${String(f('state'))} reached the agent (notify.sh -> hook)` : null;
    case 'claimed generation':
      return `${host}: claimed generation ${String(f('generation'))} (conditional create of claim.json)`;
    case 'primary: pushing':
      return `${host}: promoted containers protected: pushing them in generation ${String(f('generation'))}`;
    case 'promotion finished':
      return `${host}: promotion finished (${String(f('outcome'))}, ${String(f('started'))} started, ${String(f('ms'))} ms)`;
    case 'published':
      return f('kind') === 'full' ? `${host}: first full checkpoint of ${String(f('container'))} in the bucket (seq ${String(f('seq'))})` : null;
    case 'demoting: stopping the protected containers':
      return `${host}: demoting (${String(f('reason'))}): stopping the protected containers`;
    case 'demoting: containers stopped; waiting for a successor to save the divergent tails':
      return `${host}: stale containers stopped`;
    case 'divergent tail saved: this host held changes the new primary does not have; they are NOT applied':
      return `${host}: divergent tail of ${String(f('container'))} saved under divergent/ (not applied)`;
    case 'standby':
      return `${host}: standby (${String(f('why'))})`;
    case 'twin created':
      return `${host}: twin of ${String(f('container'))} created from the primary's spec`;
    default:
      return null;
  }
}

export async function runFailover(opts: FailoverOptions = {}): Promise<FailoverResult> {
  const log = opts.log ?? ((): void => undefined);
  const waitMs = opts.waitMs ?? 30_000;
  const start = Date.now();
  const timeline: TimelineEvent[] = [];
  // Agent events carry their own time and arrive through a pipe, a little late: every event is held this long,
  // then shown in time order.
  const HOLD_MS = 300;
  let held: TimelineEvent[] = [];
  const flush = (until: number): void => {
    const due = held.filter((e) => e.ms <= until).sort((x, y) => x.ms - y.ms);
    held = held.filter((e) => e.ms > until);
    for (const e of due) log(`${String(e.ms).padStart(6)} ms  ${e.event}`);
  };
  const printer = setInterval(() => flush(Date.now() - start - HOLD_MS), 100);
  const record = (e: TimelineEvent): void => {
    timeline.push(e);
    held.push(e);
  };
  const mark = (event: string, at = Date.now()): number => {
    record({ event, ms: at - start });
    return at;
  };
  const onAgentLine = (host: string, l: AgentLogLine): void => {
    const event = agentEvent(host, l);
    if (event !== null) record({ event, ms: Date.parse(l.time) - start });
  };

  let al: AgentLab | null = null;
  try {
    al = await AgentLab.create({
      log: (l) => log(`  lab: ${l}`), onAgentLine, waitMs, ...(opts.advertIntSec === undefined ? {} : { advertIntSec: opts.advertIntSec }),
      ...(opts.engineKinds === undefined ? {} : { engineKinds: { a: opts.engineKinds[0], b: opts.engineKinds[1] } }),
    });
    const l = al;
    const [a, b] = l.hosts;
    mark(`lab up: hosts ${a} and ${b} in network namespaces, a Docker engine in each, the S3 server in the root namespace`);
    mark(`protected web service running on ${a} (busybox httpd, --network host, --restart unless-stopped, label twinlayer.enable=true)`);
    await Promise.all([l.startAgent(a), l.startAgent(b)]);
    mark('twinlayer agent running on both hosts');
    await l.startKeepalived();
    mark(`keepalived: ${a} is MASTER and holds the virtual IP ${l.lab.vip}`);
    await waitFor(`${a} primary`, waitMs, async () => ((await l.status(a))?.claim?.status === 'owner' ? true : undefined), 20);
    await waitFor('the page on the virtual IP', waitMs, async () => ((await l.fetchPage()) !== null ? true : undefined), 20);
    mark(`the page answers on the virtual IP (from ${a})`);

    const versions: string[] = [];
    const writeVersion = async (host: string, standby: string): Promise<string> => {
      const content = `<h1>version ${versions.length + 1} ${randomBytes(4).toString('hex')}</h1>`;
      const before = await l.head();
      await l.write(host, '/var/www/index.html', content);
      mark(`write: version ${versions.length + 1} of the page inside the container on ${host}`);
      await l.waitInBucket(before, `version ${versions.length + 1}`);
      // Every commit of the write, not only the first (a leading flush may publish while the writer is at it).
      await l.shipped(host, `version ${versions.length + 1}`);
      const h = await l.head();
      mark(`in bucket: generation ${h.generation} commit ${h.seq}`);
      await waitFor(`commit ${h.seq} staged on ${standby}`, waitMs, async () => {
        const st = await l.status(standby);
        const staged = st?.containers.find((x) => x.name === WEB)?.stagedSeq ?? 0;
        return st?.generation === h.generation && staged >= h.seq ? true : undefined;
      }, 10);
      mark(`staged: commit ${h.seq} in the stopped twin on ${standby}`);
      versions.push(content);
      return content;
    };

    const failoverOf = async (from: string, to: string, lastInBucket: string, what: string): Promise<FailoverLeg> => {
      const killedAt = mark(`${what}: ${from} killed (agent, keepalived, dockerd, containerd, the container: SIGKILL)`);
      await l.kill(from);
      let served = '';
      const goodAt = await waitFor(`the last version on the virtual IP from ${to}`, waitMs, async () => {
        const page = await l.fetchPage();
        if (page === null) return undefined;
        served = page.trim();
        return Date.now();
      }, 10);
      mark(`first good response from ${to} on the virtual IP`, goodAt);
      const s = await waitFor(`${to} primary`, waitMs, async () => {
        const st = await l.status(to);
        // ms is set when the promotion is over (the role is primary a little before).
        return st?.role === 'primary' && (st.lastPromotion?.ms ?? 0) > 0 && st.vrrp.at !== null && st.generation !== null ? st : undefined;
      }, 20);
      const masterAt = Number(BigInt(s.vrrp.at ?? '0') / 1_000_000n);
      const promoted = (s.lastPromotion?.start?.containers ?? []).filter((c) => c.ok).map((c) => c.name);
      let twinsAt = 0;
      for (const name of promoted) twinsAt = Math.max(twinsAt, await l.startedAt(to, name));
      const generation = s.generation!;
      const fullAt = await waitFor(`the first full checkpoint of ${promoted.join(', ')} in generation ${generation}`, waitMs, async () => {
        let last = 0;
        for (const name of promoted) {
          const at = await l.firstFullAt(generation, name);
          if (at === undefined) return undefined;
          last = Math.max(last, at);
        }
        return last;
      }, 20);
      return {
        from, to, served, lastInBucket, generation,
        killToMasterMs: masterAt - killedAt,
        killToTwinStartedMs: twinsAt - killedAt,
        killToFirstGoodMs: goodAt - killedAt,
        masterToFullCheckpointMs: fullAt - masterAt,
      };
    };

    const n = opts.versions ?? 3;
    for (let v = 1; v <= n; v++) await writeVersion(a, b);
    const failover = await failoverOf(a, b, versions.at(-1) ?? '', 'failover');

    // a comes back as after a reboot.
    await l.revive(a);
    mark(`${a} back as after a reboot: network up, its Docker engine restarted on its data root`);
    const stale = await waitFor(`the stale container on ${a}`, waitMs, async () => (await l.runningId(a)) ?? undefined, 50).catch(() => null);
    if (stale !== null) mark(`${a}: Docker restarted the stale web container (restart policy unless-stopped)`);
    let staleStoppedAt: number | undefined;
    const watching = stale === null ? Promise.resolve() : (async () => {
      for (let i = 0; i < 2000 && staleStoppedAt === undefined; i++) {
        if ((await l.runningId(a, stale)) === null) staleStoppedAt = Date.now();
        else await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const agentA = await l.startAgent(a);
    await watching;
    await l.lab.startKeepalivedOn(a);
    mark(`${a}: keepalived started again (BACKUP, nopreempt)`);
    const converged = await waitFor(`${a} converged as the standby`, waitMs, async () => {
      const c = await l.converged(a);
      return c !== undefined ? { at: Date.now(), status: c } : undefined;
    }, 20);
    mark(`old primary ${a} rejoined as the standby: its twin staged to the head of generation ${converged.status.generation ?? '?'}`, converged.at);
    const firstLineAt = Date.parse(agentA.lines[0]?.time ?? '');
    const rejoin: Rejoin = {
      host: a,
      staleRestartedByDocker: stale !== null,
      agentStartToStaleStoppedMs: staleStoppedAt === undefined ? Number.NaN : staleStoppedAt - firstLineAt,
      agentSpawnToStaleStoppedMs: staleStoppedAt === undefined ? Number.NaN : staleStoppedAt - agentA.spawnedAt,
      agentStartToConvergedMs: converged.at - agentA.spawnedAt,
      agentFirstLineToConvergedMs: converged.at - firstLineAt,
      vipStayed: (await l.lab.vipHolder()) === b,
      divergent: converged.status.divergent.map((d) => ({ container: d.container, key: d.key })),
    };

    await writeVersion(b, a);
    const failback = await failoverOf(b, a, versions.at(-1) ?? '', 'second failover (failback)');
    return { timeline: timeline.sort((x, y) => x.ms - y.ms), versions, failover, rejoin, failback, finalStatus: await l.status(a) };
  } finally {
    try {
      await al?.destroy();
    } finally {
      mark('lab torn down');
      clearInterval(printer);
      flush(Number.POSITIVE_INFINITY);
    }
  }
}

// The lab for real network services failing over: an AgentLab (two hosts, `twinlayer agent` and keepalived on both,
// the embedded S3 server) whose engines hold the dnsmasq, nginx and nftables images, and a client namespace on the
// lab's network (its eth0 on the lab bridge, beside the hosts), from which real clients (dig, busybox udhcpc, curl)
// talk to the VIP. The services themselves are service-dhcp.ts, service-web.ts and service-firewall.ts; shared by
// the e2e tests, `twinlayer demo --service` and bench/services-failover.ts.
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { z } from 'zod';
import { AgentLab, type AgentLogLine } from './agent-lab.js';
import { dockerCli, type Engine } from './engine.js';
import { runtimeFor } from './engine-access.js';
import type { DockerRuntime } from '../docker/index.js';
import type { Lab } from './index.js';
import { loadServiceImages, type ServiceImages } from './service-images.js';
import { waitFor } from './wait.js';

/** What waitTwinFile reads of `docker inspect` (zod: another program's output); the upper dir comes from the docker
 *  unit, which finds it on either image store (on the containerd store inspect has no GraphDriver.Data). */
const twinInspectSchema = z.looseObject({
  Mounts: z.array(z.looseObject({ Type: z.string(), Source: z.string(), Destination: z.string() })),
});

export interface ServiceLabOptions {
  log?: (line: string) => void;
  /** Also the AgentLab's protected busybox httpd `web` on port 8080 (AgentLab's WEB_PORT); default false. */
  busyboxWeb?: boolean;
  /** The client's address: a static `.50` of the lab's /24, or none (a DHCP client gives it one). Default static. */
  clientAddress?: 'static' | 'dhcp';
  /** Every wait's bound (ms); default 30 s. */
  waitMs?: number;
  onAgentLine?: (host: string, line: AgentLogLine) => void;
}

/** What a failover gave: the hosts, kill → the probe's first answer, and that answer. */
export interface ServiceFailover<T> {
  from: string;
  to: string;
  killToAnswerMs: number;
  answer: T;
  /** The new primary's promotion: its own time (ms) and outcome. */
  promotion: { ms: number; outcome: string };
}

export class ServiceLab {
  readonly agents: AgentLab;
  readonly images: ServiceImages;
  /** The client namespace's name (for lab.exec / lab.spawn). */
  readonly client: string;
  /** Its static address, or null for a DHCP client. */
  readonly clientIp: string | null;
  readonly waitMs: number;

  private constructor(agents: AgentLab, images: ServiceImages, client: string, clientIp: string | null, waitMs: number) {
    this.agents = agents;
    this.images = images;
    this.client = client;
    this.clientIp = clientIp;
    this.waitMs = waitMs;
  }

  /** The lab up to the images loaded and the client namespace wired; no service, agent or keepalived yet. */
  static async create(opts: ServiceLabOptions = {}): Promise<ServiceLab> {
    const agents = await AgentLab.create({
      busyboxWeb: opts.busyboxWeb ?? false,
      ...(opts.log ? { log: opts.log } : {}),
      ...(opts.waitMs !== undefined ? { waitMs: opts.waitMs } : {}),
      ...(opts.onAgentLine ? { onAgentLine: opts.onAgentLine } : {}),
    });
    try {
      const images = await loadServiceImages(agents.hosts.map((h) => agents.engine(h)), opts.log ? { log: opts.log } : {});
      const client = await agents.lab.addClient('client');
      let clientIp: string | null = null;
      if (opts.clientAddress !== 'dhcp') {
        clientIp = `${agents.lab.subnet.split('.').slice(0, 3).join('.')}.50`;
        const r = await agents.lab.exec(client, ['ip', 'addr', 'add', `${clientIp}/24`, 'dev', 'eth0']);
        if (r.code !== 0) throw new Error(`client address ${clientIp}: ${r.stderr.trim()}`);
      }
      return new ServiceLab(agents, images, client, clientIp, opts.waitMs ?? 30_000);
    } catch (err) {
      await agents.destroy().catch((e: unknown) => opts.log?.(`cleanup after a failed set-up: ${String(e)}`));
      throw err;
    }
  }

  get lab(): Lab {
    return this.agents.lab;
  }

  /** Host a (MASTER at the start) and b. */
  get hosts(): readonly [string, string] {
    return this.agents.hosts;
  }

  engine(host: string): Engine {
    return this.agents.engine(host);
  }

  readonly #runtimes = new Map<string, DockerRuntime>();
  /** The docker unit on `host`'s engine (one per host: the engine keeps its socket across a revive). */
  #runtime(host: string): DockerRuntime {
    let r = this.#runtimes.get(host);
    if (r === undefined) this.#runtimes.set(host, (r = runtimeFor(this.engine(host))));
    return r;
  }

  /** The lab's first three octets, e.g. 10.231.7. */
  get prefix(): string {
    return this.lab.subnet.split('.').slice(0, 3).join('.');
  }

  hostIp(host: string): string {
    const h = this.lab.hosts.find((x) => x.name === host);
    if (h === undefined) throw new Error(`no lab host ${host}`);
    return h.ip;
  }

  /** `docker run -d` of a protected service on `host`: opt-in label, `--restart unless-stopped`, host network; `args` follow. */
  async runProtected(host: string, name: string, args: readonly string[]): Promise<void> {
    await dockerCli(this.engine(host), ['run', '-d', '--name', name, '--label', 'twinlayer.enable=true', '--restart', 'unless-stopped', '--network', 'host', ...args]);
  }

  /** `docker exec` in container `name` on `host`; its stdout. */
  exec(host: string, name: string, cmd: readonly string[]): Promise<string> {
    return dockerCli(this.engine(host), ['exec', name, ...cmd]);
  }

  /** The last lines of a container's output, for an error message. */
  async logs(host: string, name: string): Promise<string> {
    return dockerCli(this.engine(host), ['logs', '--tail', '30', name]).catch((err: unknown) => `(docker logs ${name}: ${String(err)})`);
  }

  /**
   * Waits until the file `path` of the stopped twin `name` on the standby `host` holds `text`: the standby has what
   * the primary wrote, whatever commit took it. Read where the twin keeps it, from the root namespace: its upper dir,
   * or the named volume mounted over `path` (never through docker cp, which would mount the twin and hold off staging).
   */
  async waitTwinFile(host: string, name: string, path: string, text: string): Promise<void> {
    await waitFor(`${path} of the twin ${name} on ${host} holding ${JSON.stringify(text.slice(0, 60))}`, this.waitMs, async () => {
      // Inspected each time: the twin may not exist yet, or be replaced (a new spec).
      const [twin] = z.array(twinInspectSchema).length(1).parse(JSON.parse(await dockerCli(this.engine(host), ['inspect', name])));
      if (twin === undefined) return undefined;
      const volume = twin.Mounts.find((m) => m.Type === 'volume' && (path === m.Destination || path.startsWith(`${m.Destination}/`)));
      const file = volume !== undefined ? join(volume.Source, relative(volume.Destination, path)) : join((await this.#runtime(host).resolveLayers(name)).upperDir, path);
      const content = await readFile(file, 'utf8').catch(() => '');
      return content.includes(text) ? true : undefined;
    }, 100);
  }

  /** Agents on both hosts, keepalived (a MASTER), and a primary owning generation 1. */
  async start(): Promise<void> {
    const [a, b] = this.hosts;
    await Promise.all([this.agents.startAgent(a), this.agents.startAgent(b)]);
    await this.agents.startKeepalived();
    await waitFor(`${a} primary of generation 1`, this.waitMs, async () => {
      const st = await this.agents.status(a);
      return st?.role === 'primary' && st.claim?.status === 'owner' ? true : undefined;
    }, 50);
  }

  /**
   * Runs `change` (on the primary) and waits until a commit of `container` made after it is in the bucket and the
   * standby has staged everything of the head in its stopped twins.
   */
  async replicate(container: string, what: string, change: () => Promise<void>): Promise<void> {
    const primary = await this.lab.vipHolder();
    if (primary === null) throw new Error(`replicate ${what}: no host holds the VIP`);
    const before = await this.agents.head();
    await change();
    await this.agents.waitInBucket(before, what, container);
    // Every commit of the change, not only the first (a leading flush may publish while the writer is at it).
    await this.agents.shipped(primary, what, container);
    await this.standbyConverged(this.agents.other(primary));
  }

  /** The standby on `host` holds every container of the head, staged to the head's seq, in stopped twins. */
  async standbyConverged(host: string): Promise<void> {
    await waitFor(`${host} converged as the standby`, this.waitMs, () => this.agents.converged(host), 50);
  }

  /**
   * SIGKILL of the whole primary (agent, keepalived, dockerd, containers); then `probe` every `everyMs` until it
   * gives an answer (it throws to fail at once on a wrong one). Returns kill → that answer, once the standby's
   * promotion is over (outcome and own time from its status).
   */
  async failover<T>(probe: () => Promise<T | undefined>, everyMs = 20): Promise<ServiceFailover<T>> {
    const from = await this.lab.vipHolder();
    if (from === null) throw new Error('failover: no host holds the VIP');
    const to = this.agents.other(from);
    const killedAt = Date.now();
    await this.agents.kill(from);
    let answer: T | undefined;
    let answeredAt = 0;
    for (let i = 0; answer === undefined; i++) {
      if (Date.now() - killedAt > this.waitMs) throw new Error(`failover ${from} → ${to}: no good answer within ${this.waitMs} ms of the kill (${i} probes)`);
      const at = Date.now();
      answer = await probe();
      answeredAt = at;
      if (answer === undefined) await new Promise((r) => setTimeout(r, everyMs));
    }
    const st = await waitFor(`${to}'s promotion over`, this.waitMs, async () => {
      const s = await this.agents.status(to);
      return s?.role === 'primary' && (s.lastPromotion?.ms ?? 0) > 0 ? s : undefined;
    }, 20);
    return { from, to, killToAnswerMs: answeredAt - killedAt, answer, promotion: { ms: st.lastPromotion?.ms ?? 0, outcome: st.lastPromotion?.outcome ?? '' } };
  }

  async destroy(): Promise<void> {
    await this.agents.destroy();
  }
}

// Private Docker engines for the lab, the demo and the tests: starts dockerd with its own roots and socket, and
// stops it completely (containers, dockerd, its containerd and shims, mounts, dirs). Never touches a system-wide dockerd.
// Two kinds (issue 11): Debian 12's dockerd 20.10 with the overlay2 graph driver and the containerd it manages, or
// Debian 13's dockerd 26 with the containerd image store, on a containerd 1.7 the harness starts beside it (as
// Docker's packages run the system's containerd), both from scripts/docker-trixie.sh's cache.
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DockerRuntime } from '../docker/index.js';

const execFileP = promisify(execFile);

/** `overlay2`: dockerd 20.10 (Debian 12), overlay2 graph driver. `containerd`: dockerd 26 (Debian 13) with the
 *  containerd image store (`containerd-snapshotter`, snapshotter overlayfs) on its own containerd 1.7. */
export type EngineKind = 'overlay2' | 'containerd';
export const ENGINE_KINDS: readonly EngineKind[] = ['overlay2', 'containerd'];

/** The containerd an engine of kind `containerd` runs on. */
export interface EngineContainerd {
  socketPath: string;
  /** containerd's --root: the overlayfs snapshots are under `<root>/io.containerd.snapshotter.v1.overlayfs`. */
  root: string;
  /** The `ctr` client of the same containerd package. */
  ctrPath: string;
  logPath: string;
  /** PID of containerd; a new one after restart(). */
  readonly pid: number;
}

export interface Engine {
  name: string;
  kind: EngineKind;
  /** The containerd the harness started for a `containerd` engine; null for `overlay2` (dockerd manages its own). */
  containerd: EngineContainerd | null;
  socketPath: string;
  dataRoot: string;
  execRoot: string;
  /** PID of dockerd (setpriv and nsenter exec in place, so this is dockerd itself); a new one after restart(). */
  readonly pid: number;
  /** The engine's view of mounts, `/proc/<pid>/mountinfo` (same mount namespace as ours: netns engines join only the network namespace). */
  readonly mountInfoPath: string;
  /** The dir holding everything of this engine (removed by stop). */
  baseDir: string;
  /** Path of dockerd's log file. */
  logPath: string;
  /**
   * Starts dockerd again, as after a reboot, once it has died (SIGKILLed with its host): on the same data root, exec
   * root and socket, so Docker applies its restart policies (`always`, `unless-stopped` containers come back). What
   * the dead engine left is cleaned up first, as a reboot would: runc state (and any container process that survived),
   * containerd and shims, every mount under the engine's dir, the exec root, the pidfile and the socket. The data
   * root stays. Throws while dockerd still runs or after stop().
   */
  restart(): Promise<void>;
  /** The init pids of the engine's containers as runc records them (whatever their network namespace). */
  containerPids(): Promise<number[]>;
  stop(): Promise<void>;
}

export interface StartEngineOptions {
  /** Short name (letters, digits, dashes); part of the temp dir name. */
  name: string;
  /** Parent dir for the engine's own temp dir (default os.tmpdir()). Keep it short: the socket path must fit 107 bytes. */
  baseDir?: string;
  /** Run dockerd inside this existing network namespace (made with `ip netns add`); joined with `nsenter --net`. */
  netns?: string;
  /** Receives dockerd's log tail when start fails and a line per lifecycle step. */
  log?: (line: string) => void;
  /** More dockerd flags, appended after the harness's own. */
  extraArgs?: string[];
  /** Bound for /_ping to answer (default 30 s). */
  startTimeoutMs?: number;
  /** Default `overlay2`. */
  kind?: EngineKind;
}

/** Where scripts/docker-trixie.sh unpacks Debian 13's docker.io and containerd (same rule as the script). */
export function trixieDockerDir(): string {
  const cache = process.env['TWINLAYER_ENGINE_CACHE'] ?? join(process.env['XDG_CACHE_HOME'] ?? join(process.env['HOME'] ?? homedir(), '.cache'), 'twinlayer');
  return join(cache, 'docker-trixie');
}

/** The unpacked tree's root, checked complete; throws naming the script that provides it. */
function trixieDockerRoot(): string {
  const dir = trixieDockerDir();
  const root = join(dir, 'root');
  for (const bin of ['usr/sbin/dockerd', 'usr/bin/containerd', 'usr/bin/containerd-shim-runc-v2', 'usr/bin/ctr']) {
    if (!existsSync(join(root, bin)) || !existsSync(join(dir, '.key'))) {
      throw new Error(`Docker 26 (engine kind containerd) not found: ${join(root, bin)} is missing; run scripts/setup.sh (scripts/docker-trixie.sh)`);
    }
  }
  return root;
}

const live = new Set<EngineImpl>();

// A test process that dies without running `after` still takes its engines down: dockerd gets SIGTERM from the
// kernel when we exit (setpriv --pdeathsig) and, for a normal exit, from this hook.
process.on('exit', () => {
  for (const e of live) {
    try {
      // Only a dockerd that still runs: the pid of one that exited (a killed host) may be another process's now.
      for (const child of e.children()) {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
        process.kill(child.pid, 'SIGTERM');
      }
    } catch {
      // already gone
    }
  }
});

/** Stops every engine this process started and has not stopped yet. Use in `after`. */
export async function stopAllEngines(): Promise<void> {
  const errors: unknown[] = [];
  for (const e of [...live]) {
    try {
      await e.stop();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `stopping ${errors.length} engine(s) failed`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A process that is a zombie (exited, not reaped) counts as gone. */
async function isRunning(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await isRunning(pid))) return true;
    await sleep(50);
  }
  return !(await isRunning(pid));
}

async function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** Whether a unix socket accepts a connection now. */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path: socketPath });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

async function logTail(logPath: string, lines = 40): Promise<string> {
  try {
    return (await readFile(logPath, 'utf8')).split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or under `dir` in our mount namespace, deepest first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(unescapeMountPath)
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** PIDs (other than ours) whose command line mentions `marker` (our engine's unique base dir): containerd, shims. */
async function pidsMentioning(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(marker)) pids.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** What the harness needs to run an engine's own containerd (kind `containerd`). */
interface ContainerdLaunch {
  command: string[];
  socketPath: string;
  root: string;
  /** containerd's --state (a tmpfs under /run on a real host: gone after a reboot, like the exec root). */
  stateDir: string;
  ctrPath: string;
  logPath: string;
}

class ContainerdImpl implements EngineContainerd {
  readonly socketPath: string;
  readonly root: string;
  readonly ctrPath: string;
  readonly logPath: string;
  // Private with accessors: an engine logged or printed does not dump the ChildProcess.
  #child: ChildProcess | undefined;
  #exited: string | undefined;

  get child(): ChildProcess | undefined {
    return this.#child;
  }

  set child(c: ChildProcess | undefined) {
    this.#child = c;
  }

  get exited(): string | undefined {
    return this.#exited;
  }

  set exited(why: string | undefined) {
    this.#exited = why;
  }

  constructor(init: ContainerdLaunch) {
    this.socketPath = init.socketPath;
    this.root = init.root;
    this.ctrPath = init.ctrPath;
    this.logPath = init.logPath;
  }

  get pid(): number {
    const pid = this.child?.pid;
    if (pid === undefined) throw new Error('containerd not launched');
    return pid;
  }
}

class EngineImpl implements Engine {
  readonly name: string;
  readonly kind: EngineKind;
  readonly containerd: ContainerdImpl | null;
  readonly baseDir: string;
  readonly socketPath: string;
  readonly dataRoot: string;
  readonly execRoot: string;
  readonly logPath: string;
  readonly #command: string[];
  readonly #containerdLaunch: ContainerdLaunch | undefined;
  readonly #env: NodeJS.ProcessEnv;
  readonly #startTimeoutMs: number;
  readonly #log: (line: string) => void;
  #child: ChildProcess | undefined;
  #exited: string | undefined;
  #stopping: Promise<void> | undefined;
  #restarting: Promise<void> | undefined;

  constructor(init: {
    name: string; kind: EngineKind; baseDir: string; command: string[]; containerd?: ContainerdLaunch; path: string; startTimeoutMs: number;
    log: (line: string) => void;
  }) {
    this.name = init.name;
    this.kind = init.kind;
    this.containerd = init.containerd === undefined ? null : new ContainerdImpl(init.containerd);
    this.#containerdLaunch = init.containerd;
    this.#env = { PATH: init.path };
    this.baseDir = init.baseDir;
    this.socketPath = join(init.baseDir, 'docker.sock');
    this.dataRoot = join(init.baseDir, 'data');
    this.execRoot = join(init.baseDir, 'exec');
    this.logPath = join(init.baseDir, 'dockerd.log');
    this.#command = init.command;
    this.#startTimeoutMs = init.startTimeoutMs;
    this.#log = init.log;
  }

  get child(): ChildProcess {
    if (this.#child === undefined) throw new Error(`engine ${this.name}: dockerd not launched`);
    return this.#child;
  }

  get pid(): number {
    const pid = this.child.pid;
    if (pid === undefined) throw new Error(`engine ${this.name}: dockerd did not spawn`);
    return pid;
  }

  get mountInfoPath(): string {
    return `/proc/${this.pid}/mountinfo`;
  }

  /** The processes this engine spawned (dockerd, and its own containerd for kind `containerd`). */
  children(): ChildProcess[] {
    return [this.#child, this.containerd?.child].filter((c): c is ChildProcess => c !== undefined);
  }

  /** Spawns containerd (kind `containerd`) and waits (bounded) for its socket to accept connections. */
  async #launchContainerd(deadline: number): Promise<void> {
    const launch = this.#containerdLaunch;
    const ctd = this.containerd;
    if (launch === undefined || ctd === null) return;
    const fd = openSync(launch.logPath, 'a');
    let child: ChildProcess;
    try {
      const [file, ...rest] = launch.command as [string, ...string[]];
      child = spawn(file, rest, { stdio: ['ignore', fd, fd], env: this.#env });
    } finally {
      closeSync(fd);
    }
    ctd.child = child;
    ctd.exited = undefined;
    child.on('exit', (code, signal) => {
      if (ctd.child === child) ctd.exited = `exited with code ${code} signal ${signal}`;
    });
    child.on('error', (err) => {
      if (ctd.child === child) ctd.exited = `failed to spawn: ${err.message}`;
    });
    if (child.pid === undefined) {
      await sleep(50);
      throw new Error(`engine ${this.name}: containerd ${ctd.exited ?? 'did not spawn'}`);
    }
    this.#log(`engine ${this.name}: containerd pid ${child.pid} at ${launch.socketPath}`);
    while (Date.now() < deadline && ctd.exited === undefined) {
      if (await socketAnswers(launch.socketPath)) return;
      await sleep(50);
    }
    const why = ctd.exited ?? `no answer on ${launch.socketPath} within ${this.#startTimeoutMs} ms`;
    throw new Error(`engine ${this.name}: containerd ${why}\n--- containerd log tail ---\n${await logTail(launch.logPath)}`);
  }

  /** Spawns (containerd and) dockerd and waits (bounded) for /_ping; throws with the tail of the log when it does not answer. */
  async launch(): Promise<void> {
    const deadline = Date.now() + this.#startTimeoutMs;
    await this.#launchContainerd(deadline);
    const fd = openSync(this.logPath, 'a');
    try {
      const [file, ...rest] = this.#command as [string, ...string[]];
      this.#child = spawn(file, rest, { stdio: ['ignore', fd, fd], env: this.#env });
    } finally {
      closeSync(fd);
    }
    const child = this.#child;
    this.#exited = undefined;
    child.on('exit', (code, signal) => {
      if (this.#child === child) this.#exited = `exited with code ${code} signal ${signal}`;
    });
    child.on('error', (err) => {
      if (this.#child === child) this.#exited = `failed to spawn: ${err.message}`;
    });
    if (child.pid === undefined) {
      // 'error' follows on the next tick; wait for it so the message names the cause.
      await sleep(50);
      throw new Error(`engine ${this.name}: dockerd ${this.#exited ?? 'did not spawn'}`);
    }
    this.#log(`engine ${this.name}: dockerd pid ${child.pid} at ${this.baseDir}`);
    while (Date.now() < deadline && this.#exited === undefined) {
      if (await ping(this.socketPath)) return;
      await sleep(100);
    }
    const why = this.#exited ?? `no answer on /_ping within ${this.#startTimeoutMs} ms`;
    throw new Error(`engine ${this.name}: dockerd ${why}\n--- dockerd log tail ---\n${await logTail(this.logPath)}`);
  }

  stop(): Promise<void> {
    this.#stopping ??= (this.#restarting ?? Promise.resolve()).catch(() => undefined).then(() => this.#stop());
    return this.#stopping;
  }

  restart(): Promise<void> {
    if (this.#stopping !== undefined) return Promise.reject(new Error(`engine ${this.name}: stopped; it cannot be restarted`));
    if (this.#restarting !== undefined) return Promise.reject(new Error(`engine ${this.name}: already restarting`));
    const p = this.#restart().finally(() => {
      if (this.#restarting === p) this.#restarting = undefined;
    });
    this.#restarting = p;
    return p;
  }

  async #restart(): Promise<void> {
    const pid = this.#runningPid();
    if (pid !== null && (await isRunning(pid))) {
      throw new Error(`engine ${this.name}: dockerd (pid ${pid}) still runs; restart() is for an engine whose dockerd died`);
    }
    const problems: string[] = [];
    await this.#releaseLeftovers(problems);
    if (problems.length > 0) throw new Error(`engine ${this.name} restart: what the dead engine left could not be cleaned up: ${problems.join('; ')}`);
    // Gone after a reboot (/run is a tmpfs): the exec root (runc and containerd state, netns files), the pidfile
    // (its pid may belong to another process by now) and the socket.
    await rm(this.execRoot, { recursive: true, force: true, maxRetries: 3 });
    await rm(join(this.baseDir, 'docker.pid'), { force: true });
    await rm(this.socketPath, { force: true });
    if (this.#containerdLaunch !== undefined) {
      await rm(this.#containerdLaunch.stateDir, { recursive: true, force: true, maxRetries: 3 });
      await rm(this.#containerdLaunch.socketPath, { force: true });
      await rm(`${this.#containerdLaunch.socketPath}.ttrpc`, { force: true });
    }
    this.#log(`engine ${this.name}: restarting dockerd on data root ${this.dataRoot}`);
    await this.launch();
  }

  /** runc's state dirs of this engine's containers: <exec root>/runtime-runc/<namespace>/<64 hex>. */
  async #runcContainers(): Promise<{ root: string; id: string }[]> {
    const runtimeRoot = join(this.execRoot, 'runtime-runc');
    const out: { root: string; id: string }[] = [];
    let namespaces: string[];
    try {
      namespaces = await readdir(runtimeRoot);
    } catch {
      return out;
    }
    for (const ns of namespaces) {
      const root = join(runtimeRoot, ns);
      try {
        for (const id of await readdir(root)) if (/^[0-9a-f]{64}$/.test(id)) out.push({ root, id });
      } catch {
        // not a dir
      }
    }
    return out;
  }

  async containerPids(): Promise<number[]> {
    const pids: number[] = [];
    for (const { root, id } of await this.#runcContainers()) {
      try {
        const state = JSON.parse(await readFile(join(root, id, 'state.json'), 'utf8')) as { init_process_pid?: unknown };
        if (typeof state.init_process_pid === 'number' && state.init_process_pid > 0) pids.push(state.init_process_pid);
      } catch {
        // being created or deleted
      }
    }
    return pids;
  }

  async #deleteRuncContainers(problems: string[]): Promise<void> {
    for (const { root, id } of await this.#runcContainers()) {
      try {
        await execFileP('runc', ['--root', root, 'delete', '--force', id], { timeout: 10_000 });
        this.#log(`engine ${this.name}: runc deleted leftover container ${id.slice(0, 12)}`);
      } catch (err) {
        problems.push(`runc delete ${id.slice(0, 12)}: ${String(err)}`);
      }
    }
  }

  /** Steps 3-5 of stop (and what restart cleans up): what a dead dockerd leaves behind, except the dirs. */
  async #releaseLeftovers(problems: string[]): Promise<void> {
    let containerdPid: number | undefined;
    try {
      containerdPid = Number((await readFile(join(this.execRoot, 'containerd', 'containerd.pid'), 'utf8')).trim()) || undefined;
    } catch {
      // dockerd may have died before starting containerd
    }
    // 3. Containers whose dockerd died without stopping them: runc (under our exec root) kills them and removes
    //    their cgroups. A container's init ignores SIGTERM from outside, so nothing else would end it.
    await this.#deleteRuncContainers(problems);
    // 4. Its containerd and any shim: dockerd stops them on a clean exit; after a SIGKILL they may linger.
    const leftovers = new Set(await pidsMentioning(this.baseDir));
    if (containerdPid !== undefined && (await isRunning(containerdPid))) leftovers.add(containerdPid);
    // The engine's own containerd (kind containerd), ended only after dockerd: its shims go with the scan above.
    const ownContainerd = this.containerd?.child?.pid;
    if (ownContainerd !== undefined && (await isRunning(ownContainerd))) leftovers.add(ownContainerd);
    for (const pid of leftovers) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    for (const pid of leftovers) {
      if (!(await waitGone(pid, 5_000))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
        await waitGone(pid, 2_000);
      }
    }
    // 5. Mounts left under our dirs (overlay merged dirs, netns files, the data-root bind), deepest first.
    for (let round = 0; round < 3; round++) {
      const mounts = await mountsUnder(this.baseDir);
      if (mounts.length === 0) break;
      for (const m of mounts) {
        try {
          await execFileP('umount', [m]);
        } catch {
          try {
            await execFileP('umount', ['-l', m]);
          } catch (err) {
            if (round === 2) problems.push(`umount ${m}: ${String(err)}`);
          }
        }
      }
    }
  }

  /** dockerd's pid while it may run; null when it never spawned. */
  #runningPid(): number | null {
    return this.#child?.pid ?? null;
  }

  async #stop(): Promise<void> {
    const problems: string[] = [];
    const pid = this.#runningPid();
    if (pid === null) {
      // dockerd never spawned; a containerd that started before it did is ended with the rest.
      if (this.containerd?.child !== undefined) await this.#releaseLeftovers(problems);
      await rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 });
      live.delete(this);
      if (problems.length > 0) throw new Error(`engine ${this.name} stop: ${problems.join('; ')}`);
      return;
    }
    // 1. Remove all containers first: dockerd would otherwise wait up to 10 s per container that ignores SIGTERM.
    if (await isRunning(pid)) {
      const apiProblems: string[] = [];
      try {
        const failures = await new DockerRuntime({ socketPath: this.socketPath, requestTimeoutMs: 15_000 }).removeAllContainers();
        for (const f of failures) apiProblems.push(`remove ${f.id}: ${f.error}`);
      } catch (err) {
        apiProblems.push(String(err));
      }
      // A dockerd that was just SIGKILLed is still exiting for a few ms (its threads are torn down; /proc shows it
      // running): its listening socket accepts our connection and the exit resets it (ECONNRESET). Its containers
      // are then reaped by runc in step 3, so a failed API call is a problem only if dockerd is still alive.
      if (apiProblems.length > 0) {
        if (await waitGone(pid, 2_000)) this.#log(`engine ${this.name}: API gone while stopping (dockerd exited): ${apiProblems.join('; ')}`);
        else problems.push(...apiProblems);
      }
    }
    // 2. SIGTERM dockerd, SIGKILL after a bound.
    if (await isRunning(pid)) {
      this.child.kill('SIGTERM');
      if (!(await waitGone(pid, 15_000))) {
        problems.push('dockerd ignored SIGTERM for 15 s; sent SIGKILL');
        this.child.kill('SIGKILL');
        await waitGone(pid, 5_000);
      }
    }
    await this.#releaseLeftovers(problems);
    // 6. The dirs.
    const remaining = await mountsUnder(this.baseDir);
    if (remaining.length === 0) {
      await rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 });
    } else {
      problems.push(`left ${this.baseDir} in place: still mounted ${remaining.join(', ')}`);
    }
    live.delete(this);
    this.#log(`engine ${this.name} stopped`);
    if (problems.length > 0) throw new Error(`engine ${this.name} stop: ${problems.join('; ')}`);
  }
}

/** Starts dockerd with its own data root, exec root, socket, pidfile and its own daemon.json, no bridge, no
 *  iptables; for kind `containerd`, dockerd 26 with the containerd image store on a containerd of its own (own root,
 *  state, socket and config). Waits (bounded) for /_ping; on failure stops what started (containerd too) and throws
 *  with the tail of the log. */
export async function startEngine(opts: StartEngineOptions): Promise<Engine> {
  if (!/^[a-zA-Z0-9-]{1,24}$/.test(opts.name)) throw new Error(`engine name must be 1-24 letters, digits or dashes, got "${opts.name}"`);
  const kind = opts.kind ?? 'overlay2';
  const log = opts.log ?? (() => undefined);
  // Checked before anything is made: a machine without Debian 13's engine unpacked fails here, naming the script.
  const trixie = kind === 'containerd' ? trixieDockerRoot() : null;
  const dockerd = trixie === null ? '/usr/sbin/dockerd' : join(trixie, 'usr/sbin/dockerd');
  if (!existsSync(dockerd)) throw new Error(`${dockerd} not found: apt-get install -y docker.io`);
  // Debian 12's runc runs the containers of both kinds (trixie's needs glibc 2.38): the unpacked tree has none, so
  // /usr/sbin/runc is found after it on PATH.
  const hostPath = process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  const path = trixie === null ? hostPath : `${join(trixie, 'usr/bin')}:${join(trixie, 'usr/sbin')}:${hostPath}`;
  if (opts.netns !== undefined && (!/^[a-zA-Z0-9_.-]+$/.test(opts.netns) || !existsSync(`/var/run/netns/${opts.netns}`))) {
    throw new Error(`engine ${opts.name}: network namespace "${opts.netns}" does not exist (/var/run/netns/${opts.netns}); create it with ip netns add`);
  }
  const baseDir = await mkdtemp(join(opts.baseDir ?? tmpdir(), `twl-${opts.name}-`));
  const socketPath = join(baseDir, 'docker.sock');
  if (Buffer.byteLength(socketPath) > 100) {
    await rm(baseDir, { recursive: true, force: true });
    throw new Error(`socket path too long for a unix socket: ${socketPath}`);
  }
  const configFile = join(baseDir, 'daemon.json');
  // An explicit config: /etc/docker/daemon.json of the machine must not leak into a test engine.
  await writeFile(configFile, trixie === null ? '{}\n' : `${JSON.stringify({ features: { 'containerd-snapshotter': true } })}\n`);
  const args = [
    '--config-file', configFile,
    '--data-root', join(baseDir, 'data'),
    '--exec-root', join(baseDir, 'exec'),
    '--pidfile', join(baseDir, 'docker.pid'),
    '-H', `unix://${socketPath}`,
    '--bridge=none',
    '--iptables=false',
  ];
  // Under the containerd image store the snapshotter is containerd's overlayfs (its default): no graph driver.
  if (trixie === null) args.push('--storage-driver', 'overlay2');
  if (opts.netns === undefined) args.push('--ip-masq=false');
  // setpriv --pdeathsig: the kernel sends SIGTERM to dockerd (and containerd) when this process dies, even by SIGKILL.
  // Both setpriv and nsenter exec in place, so the child's pid is dockerd's.
  // In a network namespace: nsenter --net joins only the network namespace. (`ip netns exec` would also give dockerd
  // a private mount namespace with a fresh /sys, where the cgroup mounts dockerd needs are missing.) containerd runs
  // there too: a host-network container shares the network namespace of the runc that containerd's shim starts.
  const wrap = (inner: string[]): string[] => {
    const inNs = opts.netns === undefined ? inner : ['/usr/bin/nsenter', `--net=/var/run/netns/${opts.netns}`, ...inner];
    return existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'TERM', ...inNs] : inNs;
  };
  let containerd: ContainerdLaunch | undefined;
  if (trixie !== null) {
    const ctd = {
      socketPath: join(baseDir, 'ctd.sock'),
      root: join(baseDir, 'ctd-root'),
      stateDir: join(baseDir, 'ctd-state'),
      ctrPath: join(trixie, 'usr/bin/ctr'),
      logPath: join(baseDir, 'containerd.log'),
    };
    // Its own config, so the machine's /etc/containerd/config.toml (paths under /var/lib/containerd) does not apply;
    // no CRI (Kubernetes') plugin: Docker does not use it.
    const ctdConfig = join(baseDir, 'containerd.toml');
    await writeFile(ctdConfig, [
      'version = 2',
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(join(baseDir, 'ctd-opt'))}`,
      '',
    ].join('\n'));
    containerd = {
      ...ctd,
      command: wrap([join(trixie, 'usr/bin/containerd'), '--config', ctdConfig, '--root', ctd.root, '--state', ctd.stateDir, '--address', ctd.socketPath]),
    };
    args.push('--containerd', ctd.socketPath);
  }
  args.push(...(opts.extraArgs ?? []));
  const command = wrap([dockerd, ...args]);
  if (opts.netns !== undefined) log(`engine ${opts.name}: in netns ${opts.netns}`);
  const engine = new EngineImpl({
    name: opts.name, kind, baseDir, command, ...(containerd === undefined ? {} : { containerd }), path, startTimeoutMs: opts.startTimeoutMs ?? 30_000, log,
  });
  live.add(engine);
  try {
    await engine.launch();
  } catch (err) {
    try {
      await engine.stop();
    } catch (e) {
      log(`cleanup after failed start: ${String(e)}`);
    }
    throw err;
  }
  return engine;
}

/** Runs the docker CLI against an engine; rejects with stderr on failure. */
export async function dockerCli(engine: Pick<Engine, 'socketPath'>, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileP('docker', ['-H', `unix://${engine.socketPath}`, ...args], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const stderr = typeof err === 'object' && err !== null && 'stderr' in err ? String(err.stderr) : '';
    throw new Error(`docker ${args.join(' ')}: ${stderr || String(err)}`, { cause: err });
  }
}

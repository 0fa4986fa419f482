// Markers make a failover checkable file by file. Every write of the soak ends by creating /chaos-m/<n> (content
// "<n>") in its container, n counting that container's writes; one write per container at a time, so marker n is
// created only after every acknowledged marker below it, and no marker is ever changed or removed. A commit holds
// the markers created since the commit before it (a full checkpoint: all of them).
//
// An epoch is one container's life on one primary: the markers it held when that host became primary (`base`), and
// the writes made there since (numbers from `start` on; `acked` those whose exec returned 0). At a failover, with
// M the highest marker in the commits the new primary finalized from, the promoted container must hold
// base ∪ {acknowledged n ≤ M} and nothing outside base ∪ [start, M]; an acknowledged marker above M never reached
// what was finalized, so it must be in the old primary's divergent tail.
//
// `echo n > f` is two steps (create, then write): a commit may catch the file between them, empty. A failover that
// finalizes such a commit boots the marker empty, as a crash of the primary at that moment would leave it; the
// completed write is then a lost one (in the divergent tail). So an empty marker is accepted where its write was
// not finalized complete (n > M, or one seen empty at an earlier failover: it is never written again), and
// counted; any other content than "" or "n" is a torn read, a failure everywhere.
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';

export const MARKER_DIR = 'chaos-m';

/** The shell that creates marker n; its exit status is the exec's (0 only once the marker is written). */
export function markerScript(n: number): string {
  return `mkdir -p /${MARKER_DIR} && echo ${n} > /${MARKER_DIR}/${n}`;
}

/** Marker files found: complete ones, empty ones (created, not yet written), and anything else (torn: a failure). */
export interface MarkerScan {
  markers: Set<number>;
  empty: Set<number>;
  bad: string[];
}

export interface Epoch {
  /** The lab host the container runs on in this epoch. */
  host: string;
  /** First marker number written in this epoch. */
  start: number;
  /** Markers the container held when the epoch began. */
  base: ReadonlySet<number>;
  /** Markers whose write returned 0 in this epoch. */
  acked: Set<number>;
}

/** Marker numbers per container and the epoch each write belongs to. */
export class MarkerBook {
  readonly #next = new Map<string, number>();
  readonly #busy = new Set<string>();
  readonly #epochs = new Map<string, Epoch>();
  /** Markers a failover booted empty (their write lost), by container: they stay so. */
  readonly #halfWritten = new Map<string, Set<number>>();

  constructor(names: readonly string[], host: string) {
    for (const n of names) {
      this.#next.set(n, 1);
      this.#epochs.set(n, { host, start: 1, base: new Set(), acked: new Set() });
    }
  }

  /** Starts a write of `name`: its marker and epoch; null while another write of `name` is in flight. */
  begin(name: string): { n: number; epoch: Epoch } | null {
    if (this.#busy.has(name)) return null;
    const n = this.#next.get(name);
    const epoch = this.#epochs.get(name);
    if (n === undefined || epoch === undefined) throw new Error(`markers: unknown container ${name}`);
    this.#busy.add(name);
    this.#next.set(name, n + 1);
    return { n, epoch };
  }

  end(name: string, w: { n: number; epoch: Epoch }, ok: boolean): void {
    if (ok) w.epoch.acked.add(w.n);
    this.#busy.delete(name);
  }

  inFlight(): number {
    return this.#busy.size;
  }

  epoch(name: string): Epoch {
    const e = this.#epochs.get(name);
    if (e === undefined) throw new Error(`markers: unknown container ${name}`);
    return e;
  }

  /** Markers of `name` a failover booted empty. */
  halfWritten(name: string): ReadonlySet<number> {
    return this.#halfWritten.get(name) ?? new Set();
  }

  noteHalfWritten(name: string, markers: Iterable<number>): void {
    const set = this.#halfWritten.get(name) ?? new Set<number>();
    for (const n of markers) set.add(n);
    this.#halfWritten.set(name, set);
  }

  /** A new primary: the container's epoch there begins with what it holds. */
  newEpoch(name: string, host: string, base: ReadonlySet<number>): void {
    this.#epochs.set(name, { host, start: this.#next.get(name) ?? 1, base, acked: new Set() });
  }
}

export interface PromotedVerdict {
  /** Acknowledged (or base) markers the promoted container lacks although they were finalized. */
  missing: number[];
  /** Markers it holds that neither its base nor the finalized commits account for. */
  unexpected: number[];
  /** Acknowledged markers above M: never in what was finalized, so they must be in a divergent tail. */
  lost: number[];
}

/** Judges the promoted container's markers `present` against its epoch, M being `maxFinalized` (0: none). */
export function judgePromoted(epoch: Epoch, maxFinalized: number, present: ReadonlySet<number>): PromotedVerdict {
  const missing = [...epoch.base, ...[...epoch.acked].filter((n) => n <= maxFinalized)].filter((n) => !present.has(n));
  const unexpected = [...present].filter((n) => !epoch.base.has(n) && !(n >= epoch.start && n <= maxFinalized));
  const lost = [...epoch.acked].filter((n) => n > maxFinalized && !present.has(n));
  const sort = (xs: number[]): number[] => [...new Set(xs)].sort((a, b) => a - b);
  return { missing: sort(missing), unexpected: sort(unexpected), lost: sort(lost) };
}

/** The markers a changeset (gzip'd tar) holds, each checked to hold its own number. */
export async function markersInChangeset(file: string): Promise<MarkerScan> {
  const markers = new Set<number>();
  const empty = new Set<number>();
  const bad: string[] = [];
  const parser = new Parser({ strict: true });
  const pending: Promise<void>[] = [];
  const re = new RegExp(`^(?:\\./)?${MARKER_DIR}/(\\d+)$`);
  parser.on('entry', (entry: ReadEntry) => {
    const m = re.exec(entry.path);
    if (m === null || entry.type !== 'File') {
      entry.resume();
      return;
    }
    const n = Number(m[1]);
    const chunks: Buffer[] = [];
    entry.on('data', (c: Buffer) => chunks.push(c));
    pending.push(new Promise((resolve) => entry.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text === `${n}\n`) markers.add(n);
      else if (text === '') empty.add(n);
      else bad.push(`${entry.path} holds ${JSON.stringify(Buffer.concat(chunks).toString('utf8').slice(0, 40))}`);
      resolve();
    })));
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    const s = createReadStream(file);
    s.on('error', reject);
    s.pipe(parser);
  });
  await Promise.all(pending);
  return { markers, empty, bad };
}

/** The markers in a container's upper dir (where a container's own files live), each checked to hold its number. */
export async function markersInUpper(upperDir: string): Promise<MarkerScan> {
  const markers = new Set<number>();
  const empty = new Set<number>();
  const bad: string[] = [];
  let names: string[];
  try {
    names = await readdir(join(upperDir, MARKER_DIR));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { markers, empty, bad };
    throw err;
  }
  for (const name of names) {
    const text = /^\d+$/.test(name) ? await readFile(join(upperDir, MARKER_DIR, name), 'utf8').catch((err: unknown) => `unreadable: ${String(err)}`) : null;
    if (text === `${name}\n`) markers.add(Number(name));
    else if (text === '') empty.add(Number(name));
    else bad.push(`${MARKER_DIR}/${name} holds ${JSON.stringify((text ?? '(not a marker name)').slice(0, 40))}`);
  }
  return { markers, empty, bad };
}

/** "1-4, 7, 9-10" */
export function ranges(xs: readonly number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === (s[j] ?? 0) + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

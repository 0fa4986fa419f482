// The latest VRRP state this host was told. keepalived runs notify scripts asynchronously, so calls arrive late,
// twice and out of order: notify.sh stamps each call with the time it started (`at`, ns since the epoch) and the
// agent keeps only the newest. A call without a stamp (a hand-written client) counts in arrival order.
import { readFile } from 'node:fs/promises';

export type VrrpState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP' | 'DELETED';
const states: readonly VrrpState[] = ['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED'];

export interface VrrpEvent {
  state: VrrpState;
  /** notify.sh's start time in ns since the epoch; null when the caller sent none. */
  at: bigint | null;
  receivedAt: number;
  /** Where it came from: the hook, or the state file notify.sh keeps (read at start). */
  source: 'hook' | 'state-file';
}

export type Offer = 'accepted' | 'duplicate' | 'stale';

export class VrrpIntent {
  #latest: VrrpEvent | null = null;

  get latest(): VrrpEvent | null {
    return this.#latest;
  }

  get state(): VrrpState | null {
    return this.#latest?.state ?? null;
  }

  /** Takes an event unless an event at least as new was taken already (same stamp and state: a duplicate). */
  offer(event: VrrpEvent): Offer {
    const cur = this.#latest;
    if (cur !== null && cur.at !== null && event.at !== null) {
      if (event.at < cur.at) return 'stale';
      if (event.at === cur.at) return event.state === cur.state ? 'duplicate' : 'stale';
    }
    this.#latest = event;
    return 'accepted';
  }
}

/** `STATE AT` as notify.sh writes it; null when the file is absent. A file that does not parse is an error naming it. */
export async function readVrrpStateFile(path: string): Promise<VrrpEvent | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`cannot read the VRRP state file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const m = /^([A-Z]+) (\d{1,20})\s*$/.exec(text);
  const state = m?.[1] as VrrpState | undefined;
  if (m === null || state === undefined || !states.includes(state)) {
    throw new Error(`the VRRP state file ${path} does not hold "STATE AT" (got ${JSON.stringify(text.slice(0, 80))})`);
  }
  return { state, at: BigInt(m[2]!), receivedAt: Date.now(), source: 'state-file' };
}

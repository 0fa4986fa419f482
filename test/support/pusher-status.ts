// What a `twinlayer push` process last wrote to its status file (<stateDir>/push/<group>/status.json, every second
// when it changed). A test that compares primary and twin waits for it: the marker written last can reach the
// twin before writes made ahead of it (a burst's leading commit ships what its walk found, the rest follows in the
// trailing commit; README, Limits), so the twin equals the primary only once the pusher holds nothing more.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface PusherContainerStatus {
  name: string;
  lastSeq: number;
  lagMs: number;
  consecutiveFailures: number;
}

export async function readPusherStatus(stateDir: string, group: string): Promise<{ containers: PusherContainerStatus[] } | null> {
  const text = await readFile(join(stateDir, 'push', group, 'status.json'), 'utf8').catch(() => null);
  return text === null ? null : (JSON.parse(text) as { containers: PusherContainerStatus[] });
}

/** The pusher published `container` up to `seq` and nothing of it waits (lag 0). */
export async function pusherCaughtUp(stateDir: string, group: string, container: string, seq: number): Promise<boolean> {
  const c = (await readPusherStatus(stateDir, group))?.containers.find((x) => x.name === container);
  return c !== undefined && c.lastSeq === seq && c.lagMs === 0;
}

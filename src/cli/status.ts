// `twinlayer status`: this host's pusher status (its status file) and puller or agent status (through the hook).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';

/** Prints whichever of the two exist; fails only when neither does. */
export async function run(config: Config): Promise<number> {
  const out: Record<string, unknown> = {};
  const pushFile = join(config.stateDir, 'push', config.group, 'status.json');
  const pushText = await readFile(pushFile, 'utf8').catch(() => null);
  if (pushText !== null) out['pusher'] = JSON.parse(pushText) as unknown;
  const url = `http://${config.hookListen}/v1/status`;
  const headers: Record<string, string> = config.hookToken ? { authorization: `Bearer ${config.hookToken}` } : {};
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    // A 503 carries why (`"phase":"starting"` while the daemon behind the hook is not open yet).
    out['puller'] = res.ok ? await res.json() : { error: `hook answered HTTP ${res.status}`, answer: await res.json().catch(() => null) };
  } catch (err) {
    if (pushText === null) throw new Error(`no pusher status at ${pushFile} and no puller hook at ${url}: ${(err as Error).message}`, { cause: err });
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  return 0;
}

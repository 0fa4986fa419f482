// Issue 8 item 1 in CI: `npm run chaos -- --quick` on every submission. The soak runs in a process of its own
// (bench/chaos.ts: two engines, the agents, keepalived, the S3 server behind fault proxies, a full disk on the
// standby), exits non-zero on any divergence, leak or convergence timeout, and its JSON report is checked here:
// every kind of fault happened, every kill was survived, no twin differs from its primary.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAULT_KINDS } from '../../bench/chaos/plan.js';
import type { SoakResult } from '../../bench/chaos/soak.js';
import { repoRoot } from '../support/twinlayer.js';

describe('chaos soak, quick', { timeout: 600_000 }, () => {
  it('survives every kind of fault with no divergence, no leak and no convergence timeout', async (t) => {
    const out = await mkdtemp(join(tmpdir(), 'tl-chaos-'));
    try {
      const agentLog = join(out, 'agents.log');
      const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'bench', 'chaos.ts'), '--quick', `--results-dir=${out}`, `--agent-log=${agentLog}`], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      const lines: string[] = [];
      const keep = (b: Buffer): void => {
        for (const l of b.toString('utf8').split('\n')) if (l !== '') lines.push(l);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      const seed = lines.find((l) => l.includes('seed'));
      t.diagnostic(seed ?? '(no seed line)');
      if (code !== 0) {
        // A failure in CI is explained only by what the agents said (their warnings, errors and role changes) and by
        // the soak's own last lines, which say which criterion failed; they come last, as CI shows a failure's tail.
        const said = collapseRepeats((await readFile(agentLog, 'utf8').catch(() => '')).split('\n')
          .filter((l) => /"level":"(warn|error)"|"msg":"(standby|demoting[^"]*|promotion [^"]*|agent started|claimed generation|following new generation)"/.test(l))
          .map((l) => l.replace(/\{"time":"[^"]*",/, '{').slice(0, 300))).slice(-60);
        assert.fail(`the quick soak failed (${seed ?? 'no seed line'}).\nthe agents' last warnings, errors and role changes:\n${said.join('\n')}\n\nthe soak's last lines:\n${lines.filter((l) => !l.startsWith('|')).slice(-40).join('\n')}`);
      }
      const json = (await readdir(out)).find((f) => f.endsWith('.json'));
      assert.ok(json, 'a JSON report was written');
      const r = JSON.parse(await readFile(join(out, json), 'utf8')) as SoakResult;
      for (const k of FAULT_KINDS) assert.ok(r.injected[k] >= 1, `no ${k} injected`);
      assert.equal(r.kills.survived, r.kills.total);
      assert.deepEqual(r.divergences, []);
      assert.deepEqual(r.failures, []);
      assert.ok(r.commits > r.containers, 'commits reached the bucket');
      const mid = r.failovers.filter((f) => f.kind !== 'final-kill');
      assert.ok(mid.some((f) => f.kind === 'failover-kill') && mid.some((f) => f.kind === 'failover-keepalived'), `failovers of both kinds during the soak: ${JSON.stringify(mid.map((f) => f.kind))}`);
      assert.equal(r.failovers.at(-1)?.kind, 'final-kill', 'the final failover ran');
      for (const f of r.failovers) {
        assert.deepEqual(f.failures, []);
        assert.ok(f.commitsBeforeMasterOldGeneration > 0 && f.markersChecked > 0, `failover ${f.n} checked commits and markers`);
        assert.equal(f.lostWritesAccounted, f.kind === 'final-kill' ? 0 : f.lostWrites, `failover ${f.n}: every lost write is in a divergent tail`);
      }
      assert.ok(r.processes.some((p) => p.judged), 'at least one agent life was judged for leaks');
      t.diagnostic(`kills ${r.kills.total}, outage ${r.outage.seconds} s, commits ${r.commits}, failovers ${r.failovers.length}, longest convergence ${r.convergence.longestAttributableMs} ms`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

/** Consecutive lines that say exactly the same (but for when) as one, with how many there were. */
function collapseRepeats(said: string[]): string[] {
  // `[ 115 s] [a /path/node] {"level":…}`: all but the soak's clock.
  const gist = (l: string): string => l.replace(/^\[\s*\d+ s\] /, '');
  const out: string[] = [];
  let run = 0;
  for (let i = 0; i < said.length; i += 1) {
    const line = said[i] ?? '';
    run += 1;
    if (i + 1 < said.length && gist(said[i + 1] ?? '') === gist(line)) continue;
    out.push(run > 1 ? `${line} (×${run})` : line);
    run = 0;
  }
  return out;
}

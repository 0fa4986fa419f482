// serveWhileStarting: the hook answers before the daemon is open ("hook answering while starting"), holds
// keepalived's calls until it is, and logs "hook listening" — the readiness a supervisor (or a test) waits for — once
// it is. A signal can come at either line, so the drain handlers must be in place at both; a signal during the start
// lets the start finish and stops what it opened; a start that fails answers the held calls with the reason.
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { afterEach, describe, it } from 'node:test';

import { loadConfig } from '../../../src/config/load.js';
import { serveWhileStarting, type OpenedDaemon } from '../../../src/cli/serve.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/index.js';
import { BootHandler } from '../../../src/vrrp-hook/index.js';
import { gate, TestPromoter } from '../vrrp-hook/test-promoter.js';

const TOKEN = 'serve-token-0123456789abcdef';

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

type Line = { msg: string; port?: number; signal?: string };
const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
const added = (sig: 'SIGINT' | 'SIGTERM'): NodeJS.SignalsListener[] => process.listeners(sig).filter((l) => !before[sig].includes(l));

/** serveWhileStarting with a logger that records each line and how many signal handlers it added by then. */
interface Started { done: Promise<void>; lines: Line[]; handlersAt: Map<string, number>; line: (msg: string) => Promise<Line>; held: () => Promise<Line>; signal: () => void }
/** The current test's start: drained after the test if the test did not (an open hook would keep the process alive). */
let current: Started | null = null;

function start(open: () => Promise<OpenedDaemon>): Started {
  const config = loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_HOOK_LISTEN: '127.0.0.1:0', TWINLAYER_HOOK_TOKEN: TOKEN } });
  const lines: Line[] = [];
  const handlersAt = new Map<string, number>();
  const waiters: Array<{ msg: string; resolve: (l: Line) => void }> = [];
  const log = createLogger({
    write: (text) => {
      const parsed = JSON.parse(text) as Line;
      handlersAt.set(parsed.msg, Math.min(added('SIGINT').length, added('SIGTERM').length));
      lines.push(parsed);
      for (const w of waiters.filter((x) => x.msg === parsed.msg)) w.resolve(parsed);
    },
  });
  const done = serveWhileStarting(config, log, open);
  const line = (msg: string): Promise<Line> => {
    const found = lines.find((l) => l.msg === msg);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no line ${JSON.stringify(msg)} within 10 s; lines: ${JSON.stringify(lines)}`)), 10_000);
      waiters.push({ msg, resolve: (l) => { clearTimeout(t); resolve(l); } });
    });
  };
  let signalled = false;
  // The drain handler itself, as the signal would run it (process.emit would also run the test runner's own
  // handlers); once only: a second signal exits the process.
  const signal = (): void => {
    if (signalled) return;
    signalled = true;
    added('SIGTERM')[0]!('SIGTERM');
  };
  current = { done, lines, handlersAt, line, held: () => line('vrrp notification while starting: held until the daemon is ready'), signal };
  return current;
}

function postMaster(port: number): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/v1/vrrp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 }),
    signal: AbortSignal.timeout(10_000),
  });
}

/** The daemon's parts, recording what the drain does to them. */
function opened(promoter: TestPromoter, calls: string[]): OpenedDaemon {
  return {
    handler: new BootHandler({ token: TOKEN, promoter, log: createLogger({ level: 'error' }), finalizeDeadlineMs: 1000, bootTimeoutMs: 5000 }, createLogger({ level: 'error' })),
    metrics: new Metrics({ processMetrics: false }),
    daemon: { stop: () => { calls.push('daemon.stop'); return Promise.resolve(); } },
    store: { destroy: () => { calls.push('store.destroy'); } },
    run: () => { calls.push('run'); },
  };
}

describe('serveWhileStarting', () => {
  afterEach(async () => {
    // Also when an assertion failed: the drain closes the hook's server, which would keep the test process alive.
    if (added('SIGTERM').length > 0) current?.signal();
    await current?.done.catch(() => undefined);
    current = null;
    for (const sig of ['SIGINT', 'SIGTERM'] as const) for (const l of added(sig)) process.removeListener(sig, l);
  });

  it('answers before the daemon is open, holds a MASTER until it is, and drains on the first signal', async () => {
    const opening = gate();
    const calls: string[] = [];
    const promoter = new TestPromoter();
    const s = start(async () => { await opening.promise; return opened(promoter, calls); });
    const early = await s.line('hook answering while starting');
    assert.equal(s.handlersAt.get('hook answering while starting'), 1, 'one handler per signal, installed before the first line');
    const port = early.port!;
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    const status = await fetch(`http://127.0.0.1:${port}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(status.status, 503);
    assert.equal(((await status.json()) as { phase: string }).phase, 'starting');
    const metricsWhileStarting = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(metricsWhileStarting.status, 503, 'no registry before the daemon is open');
    assert.equal(((await metricsWhileStarting.json()) as { phase: string }).phase, 'starting');
    const master = postMaster(port);
    await s.held();
    assert.deepEqual(promoter.sideEffects(), [], 'nothing boots before the daemon is open');
    assert.equal(s.lines.some((l) => l.msg === 'hook listening'), false);

    opening.open();
    const answer = await master;
    assert.equal(answer.status, 200);
    assert.equal(((await answer.json()) as { outcome: string }).outcome, 'booted');
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
    const ready = await s.line('hook listening');
    assert.equal(ready.port, port);
    assert.equal(s.handlersAt.get('hook listening'), 1);
    assert.deepEqual(calls, ['run']);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^twinlayer_boot_state\{state="booted"\} 1$/m, 'the daemon\'s registry, its handler\'s gauges in it');
    const again = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(again, /^twinlayer_hook_requests_total\{route="\/metrics",code="200"\} 1$/m, 'answers counted from then on');

    s.signal();
    await s.done;
    assert.deepEqual(calls, ['run', 'daemon.stop', 'store.destroy']);
    assert.ok(s.lines.some((l) => l.msg === 'stopping' && l.signal === 'SIGTERM'));
    assert.equal(await refused(port), true, 'the hook is closed after the drain');
  });

  it('a signal during the start lets it finish, stops what it opened and runs nothing', async () => {
    const opening = gate();
    const calls: string[] = [];
    const s = start(async () => { await opening.promise; return opened(new TestPromoter(), calls); });
    const port = (await s.line('hook answering while starting')).port!;
    s.signal();
    assert.equal(await refused(port), true, 'the hook closes at the signal');
    assert.deepEqual(calls, []);
    opening.open();
    await s.done;
    assert.deepEqual(calls, ['daemon.stop', 'store.destroy']);
    assert.equal(s.lines.some((l) => l.msg === 'hook listening'), false);
  });

  it('a start that fails answers the held MASTER 503 with the reason, closes the hook and throws', async () => {
    const opening = gate();
    const s = start(async () => { await opening.promise; throw new Error('docker info failed: connect ENOENT /run/docker.sock'); });
    const port = (await s.line('hook answering while starting')).port!;
    const master = postMaster(port);
    await s.held();
    opening.open();
    await assert.rejects(s.done, /docker info failed/);
    const answer = await master;
    assert.equal(answer.status, 503);
    const b = (await answer.json()) as { phase: string; error: string };
    assert.equal(b.phase, 'failed');
    assert.match(b.error, /the daemon did not start, so MASTER was not acted on: docker info failed/);
    assert.equal(await refused(port), true);
  });
});

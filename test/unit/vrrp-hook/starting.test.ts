// The hook while the daemon behind it starts (StartingHandler), in process through app.request: health answers,
// status says "starting", a notification is held and acted on once the daemon is ready (never answered as done
// before), and a start that fails answers what it held with the reason.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setImmediate as nextMacrotask } from 'node:timers/promises';

import type { Hono } from 'hono';

import { silentLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/index.js';
import { BootHandler, createHookApp, StartingHandler, type Notification, type VrrpHandler } from '../../../src/vrrp-hook/index.js';
import { parsePrometheusText } from '../../support/prom-text.js';
import { gate, TestPromoter } from './test-promoter.js';

const TOKEN = 'hook-token-0123456789abcdef';
const auth = { authorization: `Bearer ${TOKEN}` };

function hook(bootTimeoutMs = 15_000): { app: Hono; starting: StartingHandler; metrics: Metrics } {
  const starting = new StartingHandler({ log: silentLogger, bootTimeoutMs });
  const metrics = new Metrics({ processMetrics: false });
  return { app: createHookApp({ token: TOKEN, handler: starting, log: silentLogger, metrics }), starting, metrics };
}

function bootHandler(promoter: TestPromoter): BootHandler {
  return new BootHandler({ token: TOKEN, promoter, log: silentLogger, finalizeDeadlineMs: 1000, bootTimeoutMs: 15_000 }, silentLogger);
}

function notify(app: Hono, state: string, at?: string): Promise<Response> {
  return Promise.resolve(app.request('/v1/vrrp', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({ type: 'INSTANCE', name: 'VI_1', state, priority: 100, ...(at === undefined ? {} : { at }) }),
  }));
}

/** Until the handler holds `n` notifications (each call reaches it after its body is read). Bounded. */
async function untilHeld(starting: StartingHandler, n: number): Promise<void> {
  for (let i = 0; i < 10_000 && starting.held < n; i++) await nextMacrotask();
  assert.equal(starting.held, n, `${n} notifications held`);
}

interface Body { error?: string; phase?: string; held?: boolean; state?: string; outcome?: string; timedOut?: boolean; heldWhileStarting?: boolean; hook?: { phase: string } }
const body = async (res: Response): Promise<Body> => (await res.json()) as Body;

/** A daemon's handler that records what reaches it, in order. */
class Recorder implements VrrpHandler {
  readonly seen: string[] = [];
  notify(n: Notification): Promise<object> {
    this.seen.push(`${n.state}@${n.at ?? ''}`);
    return Promise.resolve({ state: n.state, acted: true });
  }
  status(): Promise<object> {
    return Promise.resolve({ role: 'standby' });
  }
  registerMetrics(): void {}
}

describe('the hook while the daemon starts', () => {
  it('/healthz answers; /v1/status answers 503 saying "starting" (and still wants the token); /v1/status is the daemon\'s once ready', async () => {
    const { app, starting } = hook();
    const health = await app.request('/healthz');
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok');
    assert.equal((await app.request('/v1/status')).status, 401);
    const status = await app.request('/v1/status', { headers: auth });
    assert.equal(status.status, 503);
    const b = await body(status);
    assert.equal(b.phase, 'starting');
    assert.match(b.error ?? '', /^starting: /);
    assert.equal(starting.phase, 'starting');

    const promoter = new TestPromoter();
    starting.ready(bootHandler(promoter));
    const ready = await app.request('/v1/status', { headers: auth });
    assert.equal(ready.status, 200);
    assert.equal((await body(ready)).hook?.phase, 'idle');
    assert.deepEqual(promoter.sideEffects(), []);
  });

  it('a MASTER before the daemon is ready is held, then boots once; its answer is the boot\'s', async () => {
    const { app, starting } = hook();
    const promoter = new TestPromoter();
    const answer = notify(app, 'MASTER');
    await untilHeld(starting, 1);
    assert.deepEqual(promoter.sideEffects(), [], 'nothing acts before the daemon is ready');
    starting.ready(bootHandler(promoter));
    const res = await answer;
    assert.equal(res.status, 200);
    const b = await body(res);
    assert.equal(b.outcome, 'booted');
    assert.equal(b.timedOut, false);
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
    // A later MASTER goes straight to the daemon: the boot is once-only.
    assert.equal((await body(await notify(app, 'MASTER'))).outcome, 'booted');
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
  });

  it('held notifications reach the daemon in the order they came, before any that comes after it is ready', async () => {
    const { app, starting } = hook();
    const daemon = new Recorder();
    const first = notify(app, 'BACKUP', '1');
    await untilHeld(starting, 1);
    const second = notify(app, 'MASTER', '2');
    await untilHeld(starting, 2);
    starting.ready(daemon);
    const third = notify(app, 'BACKUP', '3');
    const answers = await Promise.all([first, second, third]);
    assert.deepEqual(answers.map((r) => r.status), [200, 200, 200]);
    assert.deepEqual(daemon.seen, ['BACKUP@1', 'MASTER@2', 'BACKUP@3']);
  });

  it('a start that fails answers the held MASTER, and every later call, 503 with the reason; nothing boots', async () => {
    const { app, starting } = hook();
    const answer = notify(app, 'MASTER');
    await untilHeld(starting, 1);
    starting.failed(new Error('docker info failed: connect ENOENT /run/docker.sock'));
    const res = await answer;
    assert.equal(res.status, 503);
    const b = await body(res);
    assert.equal(b.phase, 'failed');
    assert.equal(b.state, 'MASTER');
    assert.match(b.error ?? '', /did not start, so MASTER was not acted on: docker info failed/);
    const later = await notify(app, 'MASTER');
    assert.equal(later.status, 503);
    assert.equal((await body(later)).phase, 'failed');
    const status = await app.request('/v1/status', { headers: auth });
    assert.equal(status.status, 503);
    assert.equal((await body(status)).phase, 'failed');
    assert.throws(() => starting.ready(new Recorder()), /already failed/);
  });

  it('a MASTER still held at bootTimeoutMs is answered 503 "held", and booted once the daemon is ready', async () => {
    const { app, starting } = hook(50);
    const promoter = new TestPromoter();
    const res = await notify(app, 'MASTER');
    assert.equal(res.status, 503);
    const b = await body(res);
    assert.equal(b.phase, 'starting');
    assert.equal(b.held, true);
    assert.match(b.error ?? '', /still starting after 50 ms: the MASTER notification is held and acted on once the daemon is ready/);
    assert.deepEqual(promoter.sideEffects(), []);
    starting.ready(bootHandler(promoter));
    let phase: string | undefined;
    for (let i = 0; i < 10_000 && phase !== 'booted'; i++) {
      await nextMacrotask();
      phase = (await body(await app.request('/v1/status', { headers: auth }))).hook?.phase;
    }
    assert.equal(phase, 'booted');
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
  });

  it('a held MASTER whose boot outlasts bootTimeoutMs is answered "timed out" (the boot goes on), not 503', async () => {
    const { app, starting } = hook(2_000);
    const promoter = new TestPromoter();
    promoter.finalizeGate = gate();
    const answer = notify(app, 'MASTER');
    await untilHeld(starting, 1);
    starting.ready(bootHandler(promoter));
    const res = await answer;
    assert.equal(res.status, 200);
    const b = await body(res);
    assert.equal(b.timedOut, true);
    assert.equal(b.heldWhileStarting, true);
    promoter.finalizeGate.open();
    await promoter.startReturned.promise;
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
  });

  it('the daemon\'s gauges join the registry when it is ready', async () => {
    const { app, starting, metrics } = hook();
    assert.equal(parsePrometheusText(await metrics.render()).has('twinlayer_boot_state'), false);
    starting.ready(bootHandler(new TestPromoter()));
    const after = parsePrometheusText(await (await app.request('/metrics')).text());
    assert.equal(after.has('twinlayer_boot_state'), true);
  });
});

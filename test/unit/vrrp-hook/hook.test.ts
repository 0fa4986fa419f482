// The hook app in process (app.request): auth, input validation, the once-only boot, deadlines, status, metrics.
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { setImmediate as nextMacrotask } from 'node:timers/promises';

import type { Hono } from 'hono';

import { createLogger, silentLogger } from '../../../src/log/logger.js';
import { createHookApp, type HookOptions } from '../../../src/vrrp-hook/index.js';
import { gate, TestPromoter } from './test-promoter.js';
import { Metrics } from '../../../src/metrics/index.js';
import { maybeSample, parsePrometheusText, sampleValue } from '../../support/prom-text.js';

const TOKEN = 'hook-token-0123456789abcdef';

function makeApp(promoter: TestPromoter, extra: Partial<HookOptions> = {}): Hono {
  return createHookApp({ token: TOKEN, promoter, log: silentLogger, finalizeDeadlineMs: 1000, bootTimeoutMs: 15_000, ...extra });
}

function post(app: Hono, body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }): Promise<Response> {
  return Promise.resolve(app.request('/v1/vrrp', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  }));
}

const master = { type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100 };

interface MasterBody {
  state: string;
  outcome: string;
  phase: string;
  timedOut: boolean;
  errors: string[];
  finalize: { bucketReachable: boolean; timedOut: boolean; containers: unknown[] };
  start: { containers: { name: string; ok: boolean }[] };
  totals: { ms: number; started: number; failed: number };
}

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

describe('auth', () => {
  const cases: [string, Record<string, string>][] = [
    ['missing token', {}],
    ['wrong token of the same length', { authorization: `Bearer ${'x'.repeat(TOKEN.length)}` }],
    ['wrong token of another length', { authorization: 'Bearer short' }],
    ['the token with one character changed', { authorization: `Bearer ${TOKEN.slice(0, -1)}0` }],
    ['a token prefix', { authorization: `Bearer ${TOKEN.slice(0, 8)}` }],
    ['the right token in another scheme', { authorization: `Basic ${TOKEN}` }],
    ['an empty bearer', { authorization: 'Bearer ' }],
  ];
  for (const [what, headers] of cases) {
    it(`${what}: POST /v1/vrrp and GET /v1/status answer 401 and the promoter is untouched`, async () => {
      const promoter = new TestPromoter();
      const app = makeApp(promoter);
      const res = await post(app, master, headers);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer/);
      const status = await app.request('/v1/status', { headers });
      assert.equal(status.status, 401);
      assert.deepEqual(promoter.calls, []);
    });
  }

  it('a 401 comes before the body is looked at (an oversized unauthenticated body is still 401)', async () => {
    const promoter = new TestPromoter();
    const res = await post(makeApp(promoter), 'x'.repeat(10_000), {});
    assert.equal(res.status, 401);
    assert.deepEqual(promoter.calls, []);
  });

  it('without a configured token, requests pass (serveHook keeps that to loopback)', async () => {
    const promoter = new TestPromoter();
    const res = await post(makeApp(promoter, { token: undefined }), master, {});
    assert.equal(res.status, 200);
    assert.equal(promoter.count('startTwins'), 1);
  });
});

describe('validation', () => {
  const bad: [string, unknown, RegExp][] = [
    ['malformed JSON', '{"type":"INSTANCE",', /malformed JSON/],
    ['empty body', '', /malformed JSON/],
    ['unknown state', { ...master, state: 'PRIMARY' }, /`state`/],
    ['lower-case state', { ...master, state: 'master' }, /`state`/],
    ['unknown type', { ...master, type: 'VRRP' }, /`type`/],
    ['extra field', { ...master, force: true }, /force/],
    ['missing field', { type: 'INSTANCE', name: 'VI_1', state: 'MASTER' }, /`priority`/],
    ['priority of the wrong type', { ...master, priority: true }, /`priority`/],
    ['priority text that is not digits', { ...master, priority: '100; rm -rf /' }, /`priority`/],
    ['priority out of range', { ...master, priority: 256 }, /`priority`/],
    ['priority as digits out of range', { ...master, priority: '999' }, /`priority`/],
    ['fractional priority', { ...master, priority: 1.5 }, /`priority`/],
    ['at as a number', { ...master, at: 1764620000123 }, /`at`/],
    ['at that is not digits', { ...master, at: '1764620000.123' }, /`at`/],
    ['at of 21 digits', { ...master, at: '1'.repeat(21) }, /`at`/],
    ['empty at', { ...master, at: '' }, /`at`/],
    ['name of the wrong type', { ...master, name: 42 }, /`name`/],
    ['empty name', { ...master, name: '' }, /`name`/],
    ['name with a newline', { ...master, name: 'VI_1\nforged log line' }, /`name`/],
    ['an array', [master], /expected object/],
    ['null', 'null', /expected object/],
  ];
  for (const [what, body, reason] of bad) {
    it(`${what} -> 400 with the reason, no side effects`, async () => {
      const promoter = new TestPromoter();
      const app = makeApp(promoter);
      const res = await post(app, body);
      assert.equal(res.status, 400);
      const { error } = await json<{ error: string }>(res);
      assert.match(error, /^invalid notification: /);
      assert.match(error, reason);
      assert.deepEqual(promoter.calls, []);
      const hook = await json<{ hook: { phase: string } }>(await app.request('/v1/status', { headers: { authorization: `Bearer ${TOKEN}` } }));
      assert.equal(hook.hook.phase, 'idle');
    });
  }

  it('an oversized body -> 413, no side effects', async () => {
    const promoter = new TestPromoter();
    const app = makeApp(promoter);
    const res = await post(app, { ...master, name: 'n'.repeat(5000) });
    assert.equal(res.status, 413);
    assert.match((await json<{ error: string }>(res)).error, /larger than 4096 bytes/);
    assert.deepEqual(promoter.calls, []);
  });

  it('maxBodyBytes is honoured and a body just under it passes', async () => {
    const promoter = new TestPromoter();
    const app = makeApp(promoter, { maxBodyBytes: 100 });
    const backup = { ...master, state: 'BACKUP' };
    const fits = { ...backup, name: 'n'.repeat(100 - JSON.stringify({ ...backup, name: '' }).length) };
    assert.equal(JSON.stringify(fits).length, 100);
    assert.equal((await post(app, fits)).status, 200);
    assert.equal((await post(app, { ...fits, name: fits.name + 'n' })).status, 413);
    assert.deepEqual(promoter.calls, []);
  });

  it('priority as a string of digits (how notify.sh sends it) is accepted', async () => {
    const promoter = new TestPromoter();
    const res = await post(makeApp(promoter), { ...master, priority: '100' });
    assert.equal(res.status, 200);
    assert.equal((await json<MasterBody>(res)).outcome, 'booted');
  });

  it('at as 1-20 digits (when notify.sh started, in ns) is accepted', async () => {
    for (const at of ['1764620000123456789', '18446744073709551615', '0']) {
      const res = await post(makeApp(new TestPromoter()), { ...master, priority: '100', at });
      assert.equal(res.status, 200, at);
      assert.equal((await json<MasterBody>(res)).outcome, 'booted');
    }
  });
});

describe('non-MASTER states', () => {
  for (const state of ['BACKUP', 'FAULT', 'STOP', 'DELETED']) {
    it(`${state} is acknowledged and nothing is started or stopped`, async () => {
      const lines: string[] = [];
      const promoter = new TestPromoter();
      const app = makeApp(promoter, { log: createLogger({ write: (l) => lines.push(l) }) });
      const res = await post(app, { ...master, type: 'GROUP', state, priority: 0 });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { state, acknowledged: true });
      assert.deepEqual(promoter.calls, []);
      assert.ok(lines.some((l) => l.includes('"vrrp notification"') && l.includes(`"state":"${state}"`)), 'logged');
    });
  }
});

describe('MASTER: one boot', () => {
  it('finalize(finalizeDeadlineMs) then startTwins; the answer carries both reports and totals', async () => {
    const promoter = new TestPromoter();
    const res = await post(makeApp(promoter, { finalizeDeadlineMs: 750 }), master);
    assert.equal(res.status, 200);
    const body = await json<MasterBody>(res);
    assert.deepEqual(promoter.sideEffects(), ['finalize:750', 'startTwins']);
    assert.equal(body.state, 'MASTER');
    assert.equal(body.outcome, 'booted');
    assert.equal(body.timedOut, false);
    assert.deepEqual(body.finalize, promoter.finalizeReport);
    assert.deepEqual(body.start, promoter.startReport);
    assert.equal(body.totals.started, 2);
    assert.equal(body.totals.failed, 0);
  });

  it('50 concurrent identical MASTERs: finalize and startTwins once each, every answer the same', async () => {
    const promoter = new TestPromoter();
    promoter.finalizeGate = gate();
    const app = makeApp(promoter);
    const pending = Array.from({ length: 50 }, () => post(app, master));
    await promoter.finalizeEntered.promise;
    promoter.finalizeGate.open();
    const responses = await Promise.all(pending);
    const bodies = await Promise.all(responses.map((r) => json<MasterBody>(r)));
    assert.ok(responses.every((r) => r.status === 200));
    assert.equal(promoter.count('finalize'), 1);
    assert.equal(promoter.count('startTwins'), 1);
    assert.ok(bodies.every((b) => b.outcome === 'booted' && !b.timedOut));
    for (const b of bodies) assert.deepEqual(b, bodies[0]);
  });

  it('MASTER/BACKUP/FAULT/MASTER flapping: one boot, the later MASTER returns the same outcome', async () => {
    const promoter = new TestPromoter();
    const app = makeApp(promoter);
    const first = await json<MasterBody>(await post(app, master));
    assert.equal((await post(app, { ...master, state: 'BACKUP' })).status, 200);
    assert.equal((await post(app, { ...master, state: 'FAULT' })).status, 200);
    const again = await json<MasterBody>(await post(app, master));
    const third = await json<MasterBody>(await post(app, { ...master, type: 'GROUP', name: 'G1' }));
    assert.equal(promoter.count('finalize'), 1);
    assert.equal(promoter.count('startTwins'), 1);
    assert.deepEqual(again, first);
    assert.deepEqual(third, first);
  });

  it('flapping while the boot is in flight: BACKUP stops nothing and the second MASTER joins the same run', async () => {
    const promoter = new TestPromoter();
    promoter.startGate = gate();
    const app = makeApp(promoter);
    const first = post(app, master);
    await promoter.startEntered.promise;
    assert.equal((await post(app, { ...master, state: 'BACKUP' })).status, 200);
    const second = post(app, master);
    promoter.startGate.open();
    const [a, b] = await Promise.all([first, second]).then((rs) => Promise.all(rs.map((r) => json<MasterBody>(r))));
    assert.deepEqual(promoter.sideEffects(), ['finalize:1000', 'startTwins']);
    assert.equal(a?.outcome, 'booted');
    assert.deepEqual(b, a);
  });

  it('a slow boot beyond bootTimeoutMs answers with timedOut and what is known; status later shows the outcome', async () => {
    const promoter = new TestPromoter();
    promoter.startGate = gate();
    const app = makeApp(promoter, { bootTimeoutMs: 30 });
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    const early = await json<MasterBody>(await post(app, master));
    assert.equal(early.timedOut, true);
    assert.equal(early.phase, 'starting');
    assert.equal(early.outcome, 'partial');
    assert.deepEqual(early.finalize, promoter.finalizeReport, 'finalize had finished and is reported');
    assert.deepEqual(early.start.containers, []);

    // Past the deadline another MASTER answers at once with the same knowledge and starts nothing.
    const meanwhile = await json<MasterBody>(await post(app, master));
    assert.equal(meanwhile.timedOut, true);
    assert.equal(promoter.count('startTwins'), 1);
    const during = await json<{ hook: { phase: string; result: unknown } }>(await app.request('/v1/status', auth));
    assert.equal(during.hook.phase, 'starting');
    assert.equal(during.hook.result, null);

    promoter.startGate.open();
    await promoter.startReturned.promise;
    await nextMacrotask(); // lets the boot's own continuation (microtasks) record the result
    const after = await json<{ role: string; hook: { phase: string; finishedAt: string | null; result: { outcome: string } | null } }>(
      await app.request('/v1/status', auth));
    assert.equal(after.hook.phase, 'booted');
    assert.equal(after.hook.result?.outcome, 'booted');
    assert.notEqual(after.hook.finishedAt, null);
    const late = await json<MasterBody>(await post(app, master));
    assert.equal(late.timedOut, false);
    assert.equal(late.outcome, 'booted');
    assert.equal(promoter.count('finalize'), 1);
    assert.equal(promoter.count('startTwins'), 1);
  });

  it('an answer at bootTimeoutMs counts the twins started so far (200 twins answered "started 0" with 117 running)', async () => {
    const promoter = new TestPromoter();
    promoter.startGate = gate();
    promoter.startedBeforeGate = [{ name: 'dns', ok: true, ms: 140 }, { name: 'mail', ok: false, ms: 20, error: 'no such container' }];
    const app = makeApp(promoter, { bootTimeoutMs: 30 });
    const early = await json<MasterBody>(await post(app, master));
    assert.equal(early.timedOut, true);
    assert.equal(early.outcome, 'partial');
    assert.deepEqual(early.start.containers, promoter.startedBeforeGate);
    assert.equal(early.totals.started, 1);
    assert.equal(early.totals.failed, 1);
    promoter.startGate.open();
    await promoter.startReturned.promise;
  });

  it('a finalize that never returns is bounded by bootTimeoutMs and twins are not started under it', async () => {
    const promoter = new TestPromoter();
    promoter.finalizeGate = gate();
    const app = makeApp(promoter, { bootTimeoutMs: 30 });
    const body = await json<MasterBody>(await post(app, master));
    assert.equal(body.timedOut, true);
    assert.equal(body.phase, 'finalizing');
    assert.equal(body.finalize.timedOut, true);
    assert.equal(promoter.count('startTwins'), 0, 'staging may still be writing: no twin starts before finalize returns');
    promoter.finalizeGate.open();
    await promoter.startReturned.promise;
    assert.equal(promoter.count('startTwins'), 1);
  });

  it('finalize reporting the bucket unreachable: twins are still started and the answer says so', async () => {
    const promoter = new TestPromoter();
    promoter.finalizeReport = { ms: 1000, bucketReachable: false, timedOut: true, containers: [{ name: 'dns', stagedSeq: 7, latestSeq: null, error: 'ECONNREFUSED' }] };
    const body = await json<MasterBody>(await post(makeApp(promoter), master));
    assert.equal(promoter.count('startTwins'), 1);
    assert.equal(body.outcome, 'booted');
    assert.equal(body.finalize.bucketReachable, false);
    assert.equal(body.totals.started, 2);
  });

  it('finalize throwing: twins are still started with what is staged and the error is reported', async () => {
    const promoter = new TestPromoter();
    promoter.finalizeError = new Error('state dir unreadable');
    const body = await json<MasterBody>(await post(makeApp(promoter), master));
    assert.equal(promoter.count('startTwins'), 1);
    assert.equal(body.outcome, 'booted');
    assert.equal(body.finalize.bucketReachable, false);
    assert.deepEqual(body.errors, ['finalize: state dir unreadable']);
  });

  it('some twins failing -> partial; all failing -> failed; startTwins throwing -> failed', async () => {
    const partial = new TestPromoter();
    partial.startReport = { ms: 10, containers: [{ name: 'dns', ok: true, ms: 5 }, { name: 'proxy', ok: false, ms: 5, error: 'image missing' }] };
    const p = await json<MasterBody>(await post(makeApp(partial), master));
    assert.equal(p.outcome, 'partial');
    assert.deepEqual(p.totals, { ms: p.totals.ms, started: 1, failed: 1 });

    const none = new TestPromoter();
    none.startReport = { ms: 10, containers: [{ name: 'dns', ok: false, ms: 5, error: 'x' }] };
    assert.equal((await json<MasterBody>(await post(makeApp(none), master))).outcome, 'failed');

    const threw = new TestPromoter();
    threw.startError = new Error('docker socket gone');
    const app = makeApp(threw);
    const t = await json<MasterBody>(await post(app, master));
    assert.equal(t.outcome, 'failed');
    assert.deepEqual(t.errors, ['startTwins: docker socket gone']);
    // A failed boot is still the one boot: a later MASTER returns it and does not start twins again.
    assert.deepEqual(await json<MasterBody>(await post(app, master)), t);
    assert.equal(threw.count('startTwins'), 1);
  });

  it('a puller that already reports role master -> already-booted, nothing finalized or started', async () => {
    const promoter = new TestPromoter();
    promoter.role = 'master';
    const body = await json<MasterBody>(await post(makeApp(promoter), master));
    assert.equal(body.outcome, 'already-booted');
    assert.deepEqual(promoter.sideEffects(), []);
  });

  it('a failing role check does not stop the promotion', async () => {
    const promoter = new TestPromoter();
    promoter.statusError = new Error('busy');
    const body = await json<MasterBody>(await post(makeApp(promoter), master));
    assert.equal(body.outcome, 'booted');
    assert.equal(promoter.count('startTwins'), 1);
  });
});

describe('health, status, metrics', () => {
  it('GET /healthz -> 200 ok without auth', async () => {
    const res = await makeApp(new TestPromoter()).request('/healthz');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok');
  });

  it('GET /v1/status (auth) -> the promoter status plus the hook boot state', async () => {
    const promoter = new TestPromoter();
    const app = makeApp(promoter);
    const res = await app.request('/v1/status', { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    const body = await json<{ role: string; generation: number; containers: unknown[]; hook: { phase: string; startedAt: null; result: null } }>(res);
    assert.equal(body.role, 'standby');
    assert.equal(body.generation, 4);
    assert.equal(body.containers.length, 1);
    assert.deepEqual(body.hook, { phase: 'idle', startedAt: null, finishedAt: null, result: null });
  });

  it('GET /v1/status when the promoter fails -> 503 with the hook state', async () => {
    const promoter = new TestPromoter();
    promoter.statusError = new Error('state dir locked');
    const res = await makeApp(promoter).request('/v1/status', { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 503);
    const body = await json<{ error: string; hook: { phase: string } }>(res);
    assert.match(body.error, /state dir locked/);
    assert.equal(body.hook.phase, 'idle');
  });

  it('GET /metrics (no auth): request counters by route and code, boot state and duration, and what the units report into the same registry', async () => {
    const promoter = new TestPromoter();
    const metrics = new Metrics();
    const app = makeApp(promoter, { metrics });
    const before = parsePrometheusText(await (await app.request('/metrics')).text());
    assert.equal(sampleValue(before, 'twinlayer_boot_state', { state: 'idle' }), 1);
    assert.equal(maybeSample(before, 'twinlayer_boot_duration_seconds'), undefined, 'no promotion finished: no duration');
    assert.equal(before.get('twinlayer_boot_duration_seconds')?.type, 'gauge', 'declared all the same');

    await post(app, master);
    await post(app, master, {});
    await post(app, '{');
    await app.request('/nope');
    metrics.failure('poll');
    const res = await app.request('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const after = parsePrometheusText(text);
    assert.equal(after.get('twinlayer_hook_requests_total')?.type, 'counter');
    assert.equal(sampleValue(after, 'twinlayer_hook_requests_total', { route: '/v1/vrrp', code: '200' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_hook_requests_total', { route: '/v1/vrrp', code: '401' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_hook_requests_total', { route: '/v1/vrrp', code: '400' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_hook_requests_total', { route: 'other', code: '404' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_hook_requests_total', { route: '/metrics', code: '200' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_boot_state', { state: 'booted' }), 1);
    assert.equal(sampleValue(after, 'twinlayer_boot_state', { state: 'idle' }), 0);
    assert.ok(sampleValue(after, 'twinlayer_boot_duration_seconds', { outcome: 'booted' }) >= 0);
    assert.equal(sampleValue(after, 'twinlayer_failures_total', { kind: 'poll' }), 1);
    assert.ok(after.has('process_cpu_user_seconds_total'), 'the process metrics are there');
  });
});

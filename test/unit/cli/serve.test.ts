// serveUntilShutdown: its "hook listening" line is the readiness a supervisor (or a test) waits for before it sends
// SIGTERM, so the drain handlers must be in place when the line is written; a signal that comes first meets Node's
// default action and the process dies by the signal without draining.
import { strict as assert } from 'node:assert';
import { connect } from 'node:net';
import { describe, it } from 'node:test';

import { loadConfig } from '../../../src/config/load.js';
import { serveUntilShutdown } from '../../../src/cli/serve.js';
import { createLogger } from '../../../src/log/logger.js';
import { createHookApp } from '../../../src/vrrp-hook/index.js';
import { TestPromoter } from '../vrrp-hook/test-promoter.js';
import { Metrics } from '../../../src/metrics/index.js';

const TOKEN = 'serve-token-0123456789abcdef';

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(false); });
    s.once('error', () => resolve(true));
  });
}

describe('serveUntilShutdown', () => {
  it('has its SIGINT/SIGTERM handlers in place when it logs "hook listening", and the first signal drains', async () => {
    const config = loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_HOOK_LISTEN: '127.0.0.1:0', TWINLAYER_HOOK_TOKEN: TOKEN } });
    const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
    const lines: Array<{ msg: string; port?: number; signal?: string }> = [];
    const atReady: Record<string, number> = {};
    const log = createLogger({
      write: (line) => {
        const parsed = JSON.parse(line) as { msg: string; port?: number; signal?: string };
        if (parsed.msg === 'hook listening') {
          atReady['SIGINT'] = process.listenerCount('SIGINT') - before.SIGINT.length;
          atReady['SIGTERM'] = process.listenerCount('SIGTERM') - before.SIGTERM.length;
        }
        lines.push(parsed);
      },
    });
    const calls: string[] = [];
    const app = createHookApp({ token: TOKEN, promoter: new TestPromoter(), log, finalizeDeadlineMs: 1000, bootTimeoutMs: 5000 });
    const { shutdown } = await serveUntilShutdown(config, log, app, { stop: () => { calls.push('daemon.stop'); return Promise.resolve(); } }, { destroy: () => { calls.push('store.destroy'); } }, new Metrics({ processMetrics: false }));
    const added = process.listeners('SIGTERM').filter((l) => !before.SIGTERM.includes(l));
    let drained = false;
    try {
      assert.deepEqual(atReady, { SIGINT: 1, SIGTERM: 1 }, 'one handler per signal, installed before the readiness line');
      const port = lines.find((l) => l.msg === 'hook listening')?.port;
      assert.ok(port !== undefined && port > 0);
      assert.equal(await refused(port), false, 'the hook answers before the signal');
      // The handler itself, as the signal would run it (process.emit would also run the test runner's own handlers).
      assert.equal(added.length, 1);
      added[0]!('SIGTERM');
      drained = true;
      await shutdown;
      assert.deepEqual(calls, ['daemon.stop', 'store.destroy']);
      assert.ok(lines.some((l) => l.msg === 'stopping' && l.signal === 'SIGTERM'));
      assert.equal(await refused(port), true, 'the hook is closed after the drain');
    } finally {
      // Also when an assertion failed: the drain closes the hook's server, which would keep the test process alive.
      if (!drained) for (const l of added) l('SIGTERM');
      await shutdown;
      for (const sig of ['SIGINT', 'SIGTERM'] as const) {
        for (const l of process.listeners(sig)) if (!before[sig].includes(l)) process.removeListener(sig, l);
      }
    }
  });
});

// notify.sh's ordering of keepalived's asynchronous calls: the `at` it sends (when it started, in ns) and the state
// file it keeps (newest state wins, written under a lock, also when no hook listens). A peer on 127.0.0.1 records
// every body and answers as the hook does for a non-MASTER state.
import { strict as assert } from 'node:assert';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';

import { notificationSchema } from '../../../src/vrrp-hook/notification.js';
import { notifyRunner } from './notify-script.js';

const TOKEN = 'state-token-0123456789abcdef';
const AT = '1764620000123456789';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createTcpServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('notify.sh: at and the VRRP state file', () => {
  let dir: string;
  let server: Server;
  let url: string;
  let stateFile: string;
  const bodies: Record<string, unknown>[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-notify-'));
    server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString('utf8')));
      req.on('end', () => {
        const body = JSON.parse(text) as Record<string, unknown>;
        bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ state: body['state'], acknowledged: true }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/vrrp`;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    bodies.length = 0;
    stateFile = join(await mkdtemp(join(dir, 's-')), 'vrrp-state');
  });

  const run = (state: string, env: Record<string, string> = {}) =>
    notifyRunner(stateFile)(['INSTANCE', 'VI_1', state, '100'], {
      TWINLAYER_HOOK_URL: url, TWINLAYER_HOOK_TOKEN: TOKEN, TWINLAYER_ENV_FILE: join(dir, 'absent.env'), ...env,
    });
  const held = (): Promise<string> => readFile(stateFile, 'utf8');

  it('the body carries at: TWINLAYER_NOTIFY_AT when set, else the clock in ns at the start; the hook schema accepts it', async () => {
    const r = await run('MASTER', { TWINLAYER_NOTIFY_AT: AT });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0]?.['at'], AT);
    assert.deepEqual(notificationSchema.parse(bodies[0]), { type: 'INSTANCE', name: 'VI_1', state: 'MASTER', priority: 100, at: AT });

    const beforeNs = BigInt(Date.now()) * 1_000_000n;
    const clock = await run('BACKUP');
    const afterNs = (BigInt(Date.now()) + 1n) * 1_000_000n;
    assert.equal(clock.code, 0, clock.stderr);
    const at = bodies[1]?.['at'];
    assert.ok(typeof at === 'string' && /^\d{19}$/.test(at), `at is 19 digits: ${String(at)}`);
    assert.ok(BigInt(at) >= beforeNs && BigInt(at) <= afterNs, `at ${at} within the run [${beforeNs}, ${afterNs}]`);
    assert.equal(await held(), `BACKUP ${at}\n`, 'the file and the body carry the same at');
  });

  it('calls finishing out of order leave the newest state in the file; each answer is logged', async () => {
    assert.equal((await run('MASTER', { TWINLAYER_NOTIFY_AT: '1764620000000000002' })).code, 0);
    assert.equal(await held(), 'MASTER 1764620000000000002\n');
    // An older BACKUP arriving late: the hook still hears it (it orders by at too), the file keeps MASTER.
    const late = await run('BACKUP', { TWINLAYER_NOTIFY_AT: '1764620000000000001' });
    assert.equal(late.code, 0, late.stderr);
    assert.match(late.stderr, /holds a newer state \(MASTER 1764620000000000002\)/);
    assert.match(late.stderr, /BACKUP 100 at 1764620000000000001: \{"state":"BACKUP","acknowledged":true\}/);
    assert.equal(bodies.at(-1)?.['at'], '1764620000000000001');
    assert.equal(await held(), 'MASTER 1764620000000000002\n');
    const fault = await run('FAULT', { TWINLAYER_NOTIFY_AT: '1764620000000000003' });
    assert.match(fault.stderr, /FAULT 100 at 1764620000000000003: \{"state":"FAULT","acknowledged":true\}/);
    assert.equal(await held(), 'FAULT 1764620000000000003\n');
    // The same at again (a duplicate) does not rewrite; STOP with an equal at loses.
    await run('STOP', { TWINLAYER_NOTIFY_AT: '1764620000000000003' });
    assert.equal(await held(), 'FAULT 1764620000000000003\n');
    // Compared as numbers, not as text or as 64-bit integers: 20 digits beat 19, 19 lose to 20.
    await run('MASTER', { TWINLAYER_NOTIFY_AT: '9999999999999999999' });
    await run('BACKUP', { TWINLAYER_NOTIFY_AT: '10000000000000000000' });
    assert.equal(await held(), 'BACKUP 10000000000000000000\n');
    await run('MASTER', { TWINLAYER_NOTIFY_AT: '9999999999999999999' });
    assert.equal(await held(), 'BACKUP 10000000000000000000\n');
  });

  it('racing calls: the newest of 16 concurrent calls wins and no temp file is left', async () => {
    const ats = Array.from({ length: 16 }, (_, i) => String(1764620000000000000n + BigInt(i * 7919 % 16)));
    const states = ['MASTER', 'BACKUP', 'FAULT', 'STOP'];
    const runs = await Promise.all(ats.map((at, i) => run(states[i % 4]!, { TWINLAYER_NOTIFY_AT: at })));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const newest = ats.reduce((a, b) => (BigInt(a) > BigInt(b) ? a : b));
    assert.equal(await held(), `${states[ats.indexOf(newest) % 4]} ${newest}\n`);
    assert.deepEqual((await readdir(join(stateFile, '..'))).sort(), ['vrrp-state', 'vrrp-state.lock']);
  });

  it('no hook listening: exit 7, the state is recorded anyway, in a directory created 0755', async () => {
    stateFile = join(dir, 'run', 'twinlayer', 'vrrp-state');
    const r = await run('MASTER', { TWINLAYER_HOOK_URL: `http://127.0.0.1:${await freePort()}/v1/vrrp`, TWINLAYER_HOOK_TIMEOUT: '3', TWINLAYER_NOTIFY_AT: AT });
    assert.equal(r.code, 7, r.stderr);
    assert.equal(await held(), `MASTER ${AT}\n`);
    assert.equal((await stat(join(dir, 'run', 'twinlayer'))).mode & 0o777, 0o755);
    assert.equal((await stat(stateFile)).mode & 0o777, 0o644);
  });

  it('a state keepalived never sends is not recorded; a bad TWINLAYER_NOTIFY_AT exits 2 before anything', async () => {
    await run('BACKUP', { TWINLAYER_NOTIFY_AT: AT });
    const unknown = await run('PRIMARY', { TWINLAYER_NOTIFY_AT: '1864620000000000000' });
    assert.match(unknown.stderr, /unknown state, not recorded/);
    assert.equal(await held(), `BACKUP ${AT}\n`);
    const sent = bodies.length;
    for (const at of ['12a', '1'.repeat(21), '-1', '1 2']) {
      const r = await run('MASTER', { TWINLAYER_NOTIFY_AT: at });
      assert.equal(r.code, 2, `${at}: ${r.stderr}`);
      assert.match(r.stderr, /TWINLAYER_NOTIFY_AT must be 1-20 digits/);
    }
    assert.equal(bodies.length, sent, 'the hook was not called');
    assert.equal(await held(), `BACKUP ${AT}\n`);
  });

  it('a state file that cannot be written: the hook is still called, the exit is 5', async () => {
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, '');
    stateFile = join(blocker, 'vrrp-state');
    const r = await run('MASTER', { TWINLAYER_NOTIFY_AT: AT });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /cannot create/);
    assert.equal(bodies.at(-1)?.['state'], 'MASTER');
  });
});

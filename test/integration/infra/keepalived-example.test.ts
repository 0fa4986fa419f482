// infra/keepalived/keepalived.conf.example is a configuration keepalived accepts (`keepalived --config-test`, which
// also fails on warnings), keeps the recommended set-up, and does what its comments say when run for real: in a
// lab host's namespace it waits out vrrp_startup_delay, becomes MASTER alone, and notify.sh records MASTER and then
// STOP in the VRRP state file.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { createLab, type Lab } from '../../../src/lab/index.js';
import { waitFor } from '../../../src/lab/wait.js';

const EXAMPLE = fileURLToPath(new URL('../../../infra/keepalived/keepalived.conf.example', import.meta.url));
const NOTIFY = fileURLToPath(new URL('../../../infra/keepalived/notify.sh', import.meta.url));
const INSTALLED_NOTIFY = '/usr/local/lib/twinlayer/notify.sh';

/** The example with its notify line pointing at `notifyPath`; fails if the example no longer names the installed path. */
async function exampleWithNotify(notifyPath: string): Promise<string> {
  const text = await readFile(EXAMPLE, 'utf8');
  const lines = text.split('\n').filter((l) => /^\s*notify\s/.test(l));
  assert.deepEqual(lines.map((l) => l.trim()), [`notify ${INSTALLED_NOTIFY}`], 'exactly one notify line, for every state');
  return text.replace(INSTALLED_NOTIFY, notifyPath);
}

/** `keepalived --config-test=LOG -f conf`: its exit code and what it logged. */
async function configTest(dir: string, name: string, conf: string): Promise<{ code: number; log: string }> {
  const confPath = join(dir, `${name}.conf`);
  const logPath = join(dir, `${name}.log`);
  await writeFile(confPath, conf);
  const code = await new Promise<number>((resolve) => {
    execFile('keepalived', [`--config-test=${logPath}`, '-f', confPath], { timeout: 30_000 }, (err) => {
      const c = (err as (Error & { code?: unknown }) | null)?.code;
      resolve(err === null ? 0 : typeof c === 'number' ? c : -1);
    });
  });
  return { code, log: await readFile(logPath, 'utf8').catch(() => '') };
}

describe('keepalived.conf.example', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-kconf-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('passes keepalived --config-test with the repository notify.sh, without a single warning', async () => {
    const { code, log } = await configTest(dir, 'example', await exampleWithNotify(NOTIFY));
    assert.equal(code, 0, log);
    assert.equal(log, '', 'nothing logged');
  });

  it('a broken copy fails the config test, naming what is wrong', async () => {
    const good = await exampleWithNotify(NOTIFY);
    const broken: Array<[string, string, RegExp]> = [
      ['a misspelt keyword', good.replace('vrrp_startup_delay', 'vrrp_startup_dlay'), /Unknown keyword 'vrrp_startup_dlay'/],
      ['no virtual_router_id', good.replace(/^\s*virtual_router_id .*$/m, ''), /virtual router id must be set/],
      ['VRRPv2 with a sub-second advert_int', good.replace('vrrp_version 3', 'vrrp_version 2'), /advertisement interval .* must be an integer/],
    ];
    for (const [what, conf, reason] of broken) {
      assert.notEqual(conf, good, `${what}: the copy differs`);
      const { code, log } = await configTest(dir, what.replace(/\W+/g, '-'), conf);
      assert.notEqual(code, 0, `${what}: exit ${code}`);
      assert.match(log, reason, what);
    }
  });

  it('keeps the recommended set-up: VRRPv3, BACKUP + nopreempt, sub-second adverts, a startup delay, script security', async () => {
    const text = (await readFile(EXAMPLE, 'utf8')).split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
    const value = (key: string): string | undefined => text.find((l) => l.split(/\s+/)[0] === key)?.split(/\s+/)[1];
    assert.equal(value('vrrp_version'), '3');
    assert.equal(value('state'), 'BACKUP');
    assert.ok(text.includes('nopreempt'));
    assert.ok(Number(value('advert_int')) > 0 && Number(value('advert_int')) < 1, `advert_int ${value('advert_int')}`);
    assert.ok(Number(value('vrrp_startup_delay')) >= 1, `vrrp_startup_delay ${value('vrrp_startup_delay')}`);
    assert.ok(text.includes('enable_script_security'));
    for (const onlyOne of ['notify_master', 'notify_backup', 'notify_fault', 'notify_stop']) {
      assert.equal(value(onlyOne), undefined, `${onlyOne}: the generic notify covers every state`);
    }
  });
});

describe('keepalived.conf.example run for real in a lab host', { timeout: 60_000 }, () => {
  let lab: Lab;
  before(async () => {
    lab = await createLab({ hosts: ['a'] });
  });
  after(async () => {
    await lab.destroy();
  });

  it('waits out vrrp_startup_delay, becomes MASTER, and notify.sh records MASTER, then STOP when keepalived stops', async () => {
    // enable_script_security checks the script's dirs at run time: a copy in the lab's root-owned 0700 dir passes
    // wherever the repository is checked out.
    const notify = join(lab.dir, 'notify.sh');
    await copyFile(NOTIFY, notify);
    await chmod(notify, 0o755);
    const conf = join(lab.dir, 'keepalived.conf');
    const text = await exampleWithNotify(notify);
    await writeFile(conf, text, { mode: 0o600 });
    const delaySec = Number(/^\s*vrrp_startup_delay\s+(\d+)/m.exec(text)?.[1]);
    assert.ok(delaySec >= 1);

    const stateFile = join(lab.dir, 'run', 'vrrp-state');
    const startedMs = Date.now();
    // keepalived passes its own environment to notify scripts; nothing listens on the hook URL (curl exit 7).
    const keepalived = await lab.spawn('a', ['keepalived', '-n', '-l', '-D', '-G', '-P', '-f', conf, '-p', join(lab.dir, 'k.pid'), '-r', join(lab.dir, 'k-vrrp.pid')], {
      env: { TWINLAYER_VRRP_STATE_FILE: stateFile, TWINLAYER_HOOK_URL: 'http://127.0.0.1:9/v1/vrrp', TWINLAYER_HOOK_TIMEOUT: '2', TWINLAYER_ENV_FILE: '/nonexistent' },
    });
    const held = (): Promise<string> => readFile(stateFile, 'utf8').catch(() => '');
    const master = await waitFor('MASTER in the state file', (delaySec + 10) * 1000, async () => {
      const m = /^MASTER (\d{19})\n$/.exec(await held());
      return m?.[1];
    });
    const masterMs = Number(BigInt(master) / 1_000_000n);
    assert.ok(masterMs - startedMs >= delaySec * 1000, `MASTER ${masterMs - startedMs} ms after start, not before vrrp_startup_delay ${delaySec} s`);

    keepalived.kill('SIGTERM');
    await keepalived.exited;
    const stop = await waitFor('STOP in the state file', 10_000, async () => /^STOP (\d{19})\n$/.exec(await held())?.[1]);
    assert.ok(BigInt(stop) > BigInt(master));
  });
});

// infra/systemd: every unit passes `systemd-analyze verify` without a warning (it exits 0 on unknown keys and bad
// values, so its output must be empty too), and the agent's unit keeps what the agent and notify.sh rely on.
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SYSTEMD = fileURLToPath(new URL('../../../infra/systemd/', import.meta.url));
const NOTIFY = fileURLToPath(new URL('../../../infra/keepalived/notify.sh', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/twinlayer.js', import.meta.url));
const INSTALLED_BIN = '/usr/local/bin/twinlayer';

/** `systemd-analyze verify` of `unit` saved as `dir/name`; ExecStart pointed at the repository's bin (verify
 *  checks that the command exists and is executable). */
async function verify(dir: string, name: string, unit: string): Promise<{ code: number; output: string }> {
  assert.ok(unit.includes(`ExecStart=${INSTALLED_BIN} `), `${name}: ExecStart=${INSTALLED_BIN} …`);
  const path = join(dir, name);
  await writeFile(path, unit.replaceAll(`ExecStart=${INSTALLED_BIN} `, `ExecStart=${BIN} `));
  return new Promise((resolve) => {
    execFile('systemd-analyze', ['verify', '--man=no', path], { timeout: 30_000 }, (err, stdout, stderr) => {
      const c = (err as (Error & { code?: unknown }) | null)?.code;
      resolve({ code: err === null ? 0 : typeof c === 'number' ? c : -1, output: stdout + stderr });
    });
  });
}

/** key -> values of a unit file (comments dropped; a repeated key keeps every value). */
function directives(unit: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) map.set(m[1], [...(map.get(m[1]) ?? []), m[2]]);
  }
  return map;
}

describe('infra/systemd units', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinlayer-units-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('every unit passes systemd-analyze verify without a warning', async () => {
    const units = (await readdir(SYSTEMD)).filter((f) => f.endsWith('.service')).sort();
    assert.deepEqual(units, ['twinlayer-agent.service', 'twinlayer-pull.service', 'twinlayer-push.service']);
    for (const name of units) {
      const { code, output } = await verify(dir, name, await readFile(join(SYSTEMD, name), 'utf8'));
      assert.equal(code, 0, `${name}: ${output}`);
      assert.equal(output.trim(), '', `${name}: no warnings`);
    }
  });

  it('a broken copy of the agent unit is reported, naming what is wrong', async () => {
    const good = await readFile(join(SYSTEMD, 'twinlayer-agent.service'), 'utf8');
    const broken: Array<[string, string, RegExp]> = [
      ['a misspelt key', good.replace(/^RuntimeDirectoryPreserve=yes$/m, 'RuntimeDirectoryPreserv=yes'), /Unknown key 'RuntimeDirectoryPreserv'/],
      ['a bad restart value', good.replace(/^Restart=always$/m, 'Restart=forever'), /restart specifier/],
    ];
    for (const [what, unit, reason] of broken) {
      assert.notEqual(unit, good, `${what}: the copy differs`);
      const { output } = await verify(dir, 'twinlayer-agent.service', unit);
      assert.match(output, reason, what);
    }
  });

  it('the agent unit: restarts always, keeps /run/twinlayer for the VRRP state file, starts before keepalived', async () => {
    const agent = directives(await readFile(join(SYSTEMD, 'twinlayer-agent.service'), 'utf8'));
    const pull = directives(await readFile(join(SYSTEMD, 'twinlayer-pull.service'), 'utf8'));
    assert.deepEqual(agent.get('ExecStart'), [`${INSTALLED_BIN} agent`]);
    assert.deepEqual(agent.get('EnvironmentFile'), pull.get('EnvironmentFile'));
    assert.deepEqual(agent.get('Restart'), ['always']);
    assert.deepEqual(agent.get('StartLimitIntervalSec'), ['0']);
    assert.deepEqual(agent.get('RuntimeDirectory'), ['twinlayer']);
    assert.deepEqual(agent.get('RuntimeDirectoryPreserve'), ['yes']);
    assert.ok(agent.get('Before')?.join(' ').split(/\s+/).includes('keepalived.service'));
    for (const key of ['After', 'Wants']) assert.ok(agent.get(key)?.join(' ').split(/\s+/).includes('docker.service'), key);
    assert.ok(agent.get('After')?.join(' ').split(/\s+/).includes('network-online.target'));
    // The standby's writes into upper dirs need what the pull unit leaves out of its hardening.
    for (const key of ['PrivateDevices', 'RestrictSUIDSGID', 'CapabilityBoundingSet', 'MemoryDenyWriteExecute']) assert.equal(agent.get(key), undefined, key);
    assert.deepEqual(agent.get('ReadWritePaths'), pull.get('ReadWritePaths'));
  });

  it('every unit keeps V8\'s compile cache where a restart finds it (not /tmp, not /root)', async () => {
    for (const unit of ['twinlayer-agent.service', 'twinlayer-pull.service', 'twinlayer-push.service']) {
      const d = directives(await readFile(join(SYSTEMD, unit), 'utf8'));
      assert.deepEqual(d.get('CacheDirectory'), ['twinlayer'], unit);
      assert.deepEqual(d.get('PrivateTmp'), ['yes'], unit);
    }
  });

  it('the VRRP state file has one default: the env example, notify.sh and the agent unit agree', async () => {
    const env = await readFile(join(SYSTEMD, 'twinlayer.env.example'), 'utf8');
    const documented = /^#?TWINLAYER_VRRP_STATE_FILE=(.*)$/m.exec(env)?.[1];
    assert.equal(documented, '/run/twinlayer/vrrp-state');
    assert.match(await readFile(NOTIFY, 'utf8'), /^\[ -n "\$state_file" \] \|\| state_file=\/run\/twinlayer\/vrrp-state$/m);
    const runtime = directives(await readFile(join(SYSTEMD, 'twinlayer-agent.service'), 'utf8')).get('RuntimeDirectory');
    assert.equal(`/run/${runtime?.[0] ?? ''}/vrrp-state`, documented);
  });
});

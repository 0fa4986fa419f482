// kill -9 of a real `twinlayer pull` process at several moments of a catch-up over ~30 commits of a few MB each:
// after every kill the applied seq never claims more than is on disk, no temp file is visible in or beside the
// twin's upper dir, and a restarted puller converges to the primary's tree (THREATS.md "Crashes and storage faults").
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { s3Env } from '../../support/s3.js';
import { freePort, spawnTwinlayer, type TwinlayerProcess } from '../../support/twinlayer.js';
import { testKey } from '../../support/signing.js';
import { waitFor } from '../../../src/lab/wait.js';
import { bucketFor, diffTrees, Primary, readApplied, sha256, treeOf } from './helpers.js';

const GROUP = 'crash';
const NAME = 'crash-web';
const COMMITS = 30;
const MB = 1024 * 1024;

describe('puller killed with SIGKILL while staging', { timeout: 240_000 }, () => {
  let fx: PullerFixture;
  const procs: TwinlayerProcess[] = [];
  /** sha256 of data/c<i>.bin per commit i. */
  const hashes = new Map<number, string>();

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-pcrash-', engine: 'puller-k' });
    fx.defer(() => Promise.allSettled(procs.map((p) => p.kill('SIGKILL'))));
    const primary = new Primary(bucketFor(fx.store, GROUP), join(fx.base, 'primary'));
    const web = await primary.container(NAME, fx.imageId);
    for (let i = 1; i <= COMMITS; i++) {
      const body = randomBytes(2 * MB + (i % 3) * MB);
      hashes.set(i, sha256(body));
      await web.commit(async (u) => {
        await mkdir(join(u, 'data'), { recursive: true });
        await writeFile(join(u, 'data', `c${i}.bin`), body);
        // One file rewritten by every commit: a crash mid-rename must leave the old or the new one, whole.
        await writeFile(join(u, 'data', 'shared.bin'), body.subarray(0, MB));
        await writeFile(join(u, 'marker'), String(i));
      });
    }
  });

  after(() => fx?.close());

  it('never records more than is staged, leaves no temp file in sight, and converges', async () => {
    const stateDir = join(fx.base, 'state');
    const env = {
      ...s3Env(fx.s3),
      TWINLAYER_GROUP: GROUP,
      TWINLAYER_HOST_ID: 'standby',
      // The test's primary signs with the test key (bucketFor).
      TWINLAYER_TRUSTED_KEYS: testKey.publicLine,
      TWINLAYER_DOCKER_SOCKET: fx.engine.socketPath,
      TWINLAYER_STATE_DIR: stateDir,
      TWINLAYER_POLL_INTERVAL_MS: '50',
      TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}`,
      TWINLAYER_HOOK_TOKEN: 'puller-crash-token-0123456789',
      TWINLAYER_LOG_LEVEL: 'debug',
    };
    const { runtime } = fx;
    const start = (): TwinlayerProcess => {
      const p = spawnTwinlayer(['pull'], env);
      procs.push(p);
      return p;
    };
    const appliedNow = async (): Promise<number> => (await readApplied(stateDir, GROUP))?.containers[NAME]?.seq ?? 0;

    /** After a kill: everything up to the applied seq is on disk, whole; nothing but known names in and beside the upper. */
    const checkInvariants = async (when: string): Promise<number> => {
      const seq = await appliedNow();
      assert.ok(seq <= COMMITS);
      const twin = await runtime.twinState(NAME);
      if (twin.state === 'absent') {
        assert.equal(seq, 0, `${when}: a staged seq without a twin`);
        return seq;
      }
      const upper = twin.layers.upperDir;
      for (let i = 1; i <= seq; i++) {
        const body = await readFile(join(upper, 'data', `c${i}.bin`)).catch(() => null);
        assert.ok(body, `${when}: applied seq ${seq} but data/c${i}.bin is missing`);
        assert.equal(sha256(body), hashes.get(i), `${when}: data/c${i}.bin is not whole`);
      }
      const allowed = new Set(['data', 'marker', 'data/shared.bin', ...[...hashes.keys()].map((i) => `data/c${i}.bin`)]);
      const stray = [...(await treeOf(upper)).keys()].filter((k) => !allowed.has(k));
      assert.deepEqual(stray, [], `${when}: unexpected entries in the upper dir`);
      const beside = (await readdir(dirname(upper))).filter((n) => !['diff', 'link', 'lower', 'work', 'twinlayer-tmp'].includes(n));
      assert.deepEqual(beside, [], `${when}: unexpected entries beside the upper dir`);
      return seq;
    };

    const seqs: number[] = [];
    // Kill at different moments after the process staged its first commit (or, for 0 ms, right when it does).
    for (const delay of [0, 40, 120, 300]) {
      const p = start();
      await p.waitForLine(/"msg":"staged"/, 60_000);
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      assert.equal(await p.kill('SIGKILL'), 'SIGKILL');
      const seq = await checkInvariants(`after a kill ${delay} ms into staging`);
      assert.ok(seq >= (seqs.at(-1) ?? 0), 'the applied seq never goes back');
      seqs.push(seq);
      if (seq >= COMMITS) break;
    }
    console.log(`# applied seq after each kill: ${seqs.join(', ')} of ${COMMITS}`);
    assert.ok(seqs.length >= 3, `killed at ${seqs.length} moments before it finished (${seqs.join(', ')})`);

    const last = start();
    await waitFor('the restarted puller staged every commit', 120_000, async () => ((await appliedNow()) === COMMITS ? true : undefined), 100);
    assert.equal(await last.kill('SIGTERM'), 0);
    await checkInvariants('at the end');
    const twin = await runtime.twinState(NAME);
    if (twin.state === 'absent') assert.fail('twin absent at the end');
    const diff = diffTrees(await treeOf(twin.layers.upperDir), await treeOf(join(fx.base, 'primary', NAME, 'upper')));
    assert.deepEqual(diff, [], 'the twin holds the primary tree');
  });
});

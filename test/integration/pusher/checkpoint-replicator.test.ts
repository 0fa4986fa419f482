// The replicator's checkpoints (issue 12, item 1) on a plain directory, the real tracker, journal writer and shipped
// state over a local-directory store (faults injected at its PUTs): a checkpoint that fails holds no delta back and
// leaves the committed shipped state at the last published commit (its pending state names a record that never
// landed, which a restart discards); a due checkpoint lets the write that came first go out as a delta; the age is
// also looked at by a reconcile that finds nothing new, and nothing is checkpointed without a delta since the last.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import PQueue from 'p-queue';

import { UpperTracker } from '../../../src/changeset/index.js';
import type { CheckpointPolicy } from '../../../src/pusher/checkpoint-policy.js';
import { ContainerReplicator } from '../../../src/pusher/replicator.js';
import { ShippedStateStore } from '../../../src/pusher/shipped-state.js';
import { asDigest, Bucket, DirBlobStore, JournalWriter, type CommitRecord, type Generation } from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';
import { logCollector, WrappedStore } from '../store/helpers.js';

const g1 = 1 as Generation;

describe('checkpoints of one container replicator', () => {
  let root = '';
  let n = 0;
  const replicators: ContainerReplicator[] = [];
  const journals: JournalWriter[] = [];

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tl-ckpt-repl-'));
  });
  after(async () => {
    for (const r of replicators) await r.close();
    for (const j of journals) await j.close();
    if (root !== '') await rm(root, { recursive: true, force: true });
  });

  /** `clock.skew` moves the replicator's clock ahead of the real one (its checkpoints' age). */
  async function setup(checkpoints: CheckpointPolicy) {
    const clock = { skew: 0 };
    const dir = join(root, `c${++n}`);
    const upper = join(dir, 'upper');
    const work = join(dir, 'work');
    await mkdir(upper, { recursive: true });
    await mkdir(work, { recursive: true });
    const wrap = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
    const bucket = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'g' });
    const journal = new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: null });
    journals.push(journal);
    const shippedState = new ShippedStateStore(join(dir, 'state'), 'g');
    const { log, lines } = logCollector();
    const r = new ContainerReplicator({
      name: 'web', containerId: 'c1', generation: g1, shipped: undefined, needFull: true, specDigest: asDigest('ab'.repeat(32)),
      makeTracker: (s) => new UpperTracker({ upperDir: upper, workDir: work, ...(s === undefined ? {} : { shipped: s }) }),
      bucket, journal, uploads: new PQueue({ concurrency: 2 }), shippedState, retry: () => undefined, log, checkpoints,
      clock: () => Date.now() + clock.skew,
    });
    replicators.push(r);
    const submit = async (scope: Set<string> | 'reconcile'): Promise<void> => {
      r.submit({ scope, firstEventAt: Date.now(), firstChangeAt: scope === 'reconcile' ? null : Date.now() });
      await r.idle();
    };
    const commit = async (file: string, body: string): Promise<void> => {
      await writeFile(join(upper, file), body);
      await submit(new Set([file]));
    };
    const records = async (): Promise<CommitRecord[]> => {
      const out: CommitRecord[] = [];
      for await (const item of bucket.listRecords(g1, 0)) {
        if (!('record' in item)) assert.fail(`journal item ${item.seq}: ${item.error}`);
        out.push(item.record);
      }
      return out;
    };
    const kinds = async (): Promise<string> => (await records()).map((x) => (x.kind === 'full' ? 'F' : 'd')).join('');
    await submit('reconcile');
    return { r, wrap, bucket, journal, shippedState, lines, submit, commit, records, kinds, clock };
  }

  it('a failed checkpoint holds no delta back and leaves the committed shipped state at the last published commit', async () => {
    const c = await setup({ deltaShare: 0.02, maxAgeMs: 3_600_000 });
    let refused = 0;
    c.wrap.beforePut = (key, body) => {
      if (key.includes('/journal/') && Buffer.isBuffer(body) && /"kind": ?"full"/.test(body.toString()) && !key.endsWith('0000000000000001.json')) {
        refused++;
        throw new Error('injected: the checkpoint record is not written');
      }
    };
    // 6 deltas of 4 KiB (at least) each weigh more than 2 % of 1 MiB: a checkpoint is due after the sixth.
    for (let i = 0; i < 6; i++) await c.commit(`f${i}`, `v${i}`);
    assert.equal(refused, 1, 'the checkpoint was tried once');
    assert.equal(await c.kinds(), 'Fdddddd');
    assert.ok(c.lines.some((l) => l['msg'] === 'checkpoint failed; deltas go on, the checkpoint is tried again later'));
    const committed = await c.shippedState.load('web', false);
    assert.equal(committed?.lastSeq, 7);
    assert.deepEqual(committed?.sinceFull, { deltas: 6, bytes: 6 * 4096 });
    assert.deepEqual(committed?.shipped.entries.map(([p]) => p).sort(), ['f0', 'f1', 'f2', 'f3', 'f4', 'f5']);
    // The pending state names the checkpoint's changeset, which no record names: a restart discards it.
    const pending = await c.shippedState.load('web', true);
    assert.ok(pending !== null && !(await c.records()).some((x) => x.digest === pending.digest), 'pending names no published record');
    // The next write goes out at once as a delta, without a backoff and without the checkpoint in front of it.
    await c.commit('f6', 'v6');
    assert.equal(await c.kinds(), 'Fddddddd');
    assert.equal(refused, 1, 'the checkpoint waits before it is tried again');
    const status = c.r.status(null);
    assert.equal(status.consecutiveFailures, 0);
    assert.equal(status.lastError, null);
    assert.equal((await c.shippedState.load('web', false))?.lastSeq, 8);
    assert.equal(await c.shippedState.load('web', true), null, 'the delta published cleared the pending state');
  });

  it('lets the write that finds a checkpoint due go out first as a delta, then the checkpoint', async () => {
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000 });
    await c.commit('a', '1');
    assert.equal(await c.kinds(), 'Fd');
    c.clock.skew = 3_600_001;
    await c.commit('b', '2');
    assert.equal(await c.kinds(), 'FddF');
    const [, , delta, full] = await c.records();
    assert.ok(delta !== undefined && full !== undefined);
    assert.ok(delta.seq < full.seq && delta.counts.files >= 1);
    assert.equal(c.journal.lastFullOf('web'), full.seq);
    const committed = await c.shippedState.load('web', false);
    assert.equal(committed?.lastSeq, full.seq);
    assert.deepEqual(committed?.sinceFull, { deltas: 0, bytes: 0 });
    assert.equal(committed?.lastFullAt, full.publishedAt);
  });

  it('checkpoints on a reconcile that finds nothing once the age passed with deltas since; never without a delta', async () => {
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000 });
    await c.commit('a', '1');
    c.clock.skew = 3_500_000;
    await c.submit('reconcile');
    assert.equal(await c.kinds(), 'Fd', 'not due yet');
    c.clock.skew = 3_600_001;
    await c.submit('reconcile');
    assert.equal(await c.kinds(), 'FdF');
    c.clock.skew = 3 * 3_600_001;
    await c.submit('reconcile');
    assert.equal(await c.kinds(), 'FdF', 'nothing new since the checkpoint: no other one');
  });
});

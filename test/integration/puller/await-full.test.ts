// The journal follower's side of bounded queues, on the embedded S3 server (no engine): a container that only a full
// checkpoint can move keeps no queue, its deltas are passed over and the durable cursor passes them, also after a
// restart from the saved state; a container that cannot stage keeps at most `maxQueued` commits; a full checkpoint
// ends the wait once staged. The stager's part (refusals, gaps) runs on a real engine in bounded-work.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { silentLogger } from '../../../src/log/logger.js';
import { AppliedStateFile, type AppliedState } from '../../../src/puller/applied-state.js';
import { ContainerStates } from '../../../src/puller/container-state.js';
import { JournalFollower } from '../../../src/puller/journal-follower.js';
import { asDigest, type Bucket, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, craftRecord, writeHead } from './helpers.js';

const DIGEST = asDigest('0'.repeat(64));

describe('journal follower: waits for a full checkpoint, bounded queues', () => {
  let s3: TestS3;
  let store: S3BlobStore;
  let base: string;
  let caseNo = 0;

  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
    base = await mkdtemp(join(tmpdir(), 'tl-await-'));
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  function newCase(): {
    bucket: Bucket; file: AppliedStateFile; follower: (maxQueued?: number) => { j: JournalFollower; cs: ContainerStates };
    /** `sameAs`: a full checkpoint restating the container's previous record. */
    publish: (name: string, kind?: 'full' | 'delta', sameAs?: boolean) => Promise<number>;
  } {
    caseNo++;
    const group = `a${caseNo}`;
    const bucket = bucketFor(store, group);
    const file = new AppliedStateFile(join(base, group), group);
    let seq = 0;
    const head: Record<string, number> = {};
    return {
      bucket, file,
      follower: (maxQueued) => {
        const cs = new ContainerStates();
        const j = new JournalFollower({ bucket, log: silentLogger, file, generationCheckEvery: 1, maxRecordsPerPoll: 10_000, ...(maxQueued === undefined ? {} : { maxQueued }) }, cs);
        return { j, cs };
      },
      publish: async (name, kind = 'delta', sameAs) => {
        seq++;
        await bucket.writeRecord(craftRecord({ seq, parentSeq: head[name] ?? 0, container: name, kind, digest: DIGEST, size: 100, ...(sameAs ? { sameAs: head[name] ?? 0 } : {}) }));
        head[name] = seq;
        await writeHead(bucket, seq, head);
        return seq;
      },
    };
  }

  /** What the stager does when it stages the head of `name`'s queue: out of the queue, the cursor saved. */
  async function stageHead(c: ReturnType<typeof newCase>, j: JournalFollower, cs: ContainerStates, state: AppliedState, name: string): Promise<number> {
    const r = cs.get(name).queue.shift();
    assert.ok(r, `${name} has a queued commit`);
    state.containers[name] = { generation: r.generation, seq: r.seq, digest: r.digest, stagedAt: null };
    if (r.kind === 'full') j.fullStaged(state, name);
    state.cursor = j.durableCursor();
    await c.file.save(state);
    return r.seq;
  }

  it('passes over the deltas of a container waiting for a full checkpoint, and the cursor with them, across a restart', async () => {
    const c = newCase();
    let { j, cs } = c.follower();
    let state = await c.file.load('x');
    await c.publish('stuck', 'full');
    await c.publish('flow', 'full');
    await j.followNewestGeneration(state);
    await j.readNew(state);
    await stageHead(c, j, cs, state, 'stuck');
    await stageHead(c, j, cs, state, 'flow');
    const refused = await c.publish('stuck');
    await j.readNew(state);
    assert.equal(cs.get('stuck').queue[0]?.seq, refused);
    // The stager refused its head: only a full checkpoint can move it now.
    j.awaitFull(state, 'stuck', 'commit refused');
    assert.deepEqual(cs.get('stuck').queue, []);
    for (let i = 0; i < 5; i++) await c.publish('stuck');
    const flowSeq = await c.publish('flow');
    await j.readNew(state);
    assert.deepEqual(cs.get('stuck').queue, [], 'its deltas are passed over');
    assert.equal(await stageHead(c, j, cs, state, 'flow'), flowSeq);
    assert.equal((await c.file.load('x')).cursor, flowSeq, 'the durable cursor passed them');
    assert.equal((await c.file.load('x')).awaitFull?.['stuck'], 'commit refused', 'saved with the cursor');

    // A restart from the saved state: still waiting, the reason shown, later deltas passed over too.
    ({ j, cs } = c.follower());
    state = await c.file.load('x');
    j.resumeFrom(state.cursor);
    await c.publish('stuck');
    await j.readNew(state);
    assert.deepEqual(cs.get('stuck').queue, []);
    assert.equal(cs.get('stuck').blocked, 'commit refused');

    // Its full checkpoint is queued, the deltas after it too; staged, the wait ends.
    const full = await c.publish('stuck', 'full');
    const after = await c.publish('stuck');
    await j.readNew(state);
    assert.deepEqual(cs.get('stuck').queue.map((r) => r.seq), [full, after]);
    assert.equal(cs.get('stuck').blocked, null, 'not held against the bound while its full checkpoint waits to be staged');
    await stageHead(c, j, cs, state, 'stuck');
    assert.equal(state.awaitFull, undefined);
    assert.equal(await stageHead(c, j, cs, state, 'stuck'), after);
    assert.equal((await c.file.load('x')).cursor, after);
  });

  it('keeps the deltas queued before a checkpoint that restates the last of them; any other full commit replaces them', async () => {
    const c = newCase();
    const { j, cs } = c.follower();
    const state = await c.file.load('x');
    await c.publish('web', 'full');
    await j.followNewestGeneration(state);
    await j.readNew(state);
    await stageHead(c, j, cs, state, 'web');
    const d1 = await c.publish('web');
    const d2 = await c.publish('web');
    const restating = await c.publish('web', 'full', true);
    const d3 = await c.publish('web');
    await j.readNew(state);
    // Behind by two deltas: they are staged, then the checkpoint is recorded (the stager's part, checkpoint-trusted).
    assert.deepEqual(cs.get('web').queue.map((r) => r.seq), [d1, d2, restating, d3]);
    const full = await c.publish('web', 'full');
    await j.readNew(state);
    assert.deepEqual(cs.get('web').queue.map((r) => r.seq), [full], 'a checkpoint with changes of its own replaces the queue');
    // With nothing queued (its parent was staged and left the queue) a restating checkpoint is queued alone.
    await stageHead(c, j, cs, state, 'web');
    const d4 = await c.publish('web');
    await j.readNew(state);
    assert.deepEqual(cs.get('web').queue.map((r) => r.seq), [d4]);
    cs.get('web').queue.pop();
    const lone = await c.publish('web', 'full', true);
    await j.readNew(state);
    assert.deepEqual(cs.get('web').queue.map((r) => r.seq), [lone]);
  });

  it('bounds the queue of a container that cannot stage, not of one that only lags behind', async () => {
    const c = newCase();
    const { j, cs } = c.follower(3);
    const state = await c.file.load('x');
    await c.publish('held', 'full');
    await c.publish('behind', 'full');
    await j.followNewestGeneration(state);
    await j.readNew(state);
    await stageHead(c, j, cs, state, 'held');
    await stageHead(c, j, cs, state, 'behind');
    cs.get('held').blocked = 'twin is running or mounted; staging paused';
    for (let i = 0; i < 5; i++) {
      await c.publish('held');
      await c.publish('behind');
    }
    await j.readNew(state);
    assert.deepEqual(cs.get('held').queue, [], 'past the bound: dropped');
    assert.match(state.awaitFull?.['held'] ?? '', /more than 3 commits were queued while it could not stage \(twin is running or mounted; staging paused\)/);
    assert.equal(cs.get('behind').queue.length, 5, 'a container that can stage keeps what it has to stage');
    assert.equal(state.awaitFull?.['behind'], undefined);
    assert.equal(j.durableCursor(), cs.get('behind').queue[0]!.seq - 1, 'the cursor waits for the one that stages, not for the dropped queue');
  });
});

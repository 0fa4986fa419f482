// How the standby reads what a head announces, on a local-directory store: a few new records are read by key (no
// listing before them, a round trip less between a publish and the staging); anything the keys do not answer plainly
// (a record missing or refused, more records than a direct read takes) goes through the listing as before, so gaps
// are found and reported the same way.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { silentLogger } from '../../../src/log/logger.js';
import { AppliedStateFile, type AppliedState } from '../../../src/puller/applied-state.js';
import { ContainerStates } from '../../../src/puller/container-state.js';
import { JournalFollower } from '../../../src/puller/journal-follower.js';
import { asDigest, asSeq, Bucket, DirBlobStore, JournalWriter, type Generation, type PublishInput } from '../../../src/store/index.js';
import { WrappedStore } from '../../integration/store/helpers.js';
import { testSignatures } from '../../support/signing.js';

const g1 = 1 as Generation;
const commit = (kind: 'delta' | 'full', n: number): PublishInput => ({
  container: 'web', digest: asDigest(n.toString(16).padStart(64, '0')), size: 1, kind, counts: { files: 1, deletions: 0, bytes: 1 }, firstWriteAt: new Date(0),
});

describe('JournalFollower reading what the head announces', () => {
  let root: string;
  let n = 0;
  const writers: JournalWriter[] = [];
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'twinlayer-follower-'));
  });
  after(async () => {
    for (const w of writers) await w.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A journal with one full commit of `web`, and a follower that has read it. */
  const setup = async (): Promise<{ wrap: WrappedStore; bucket: Bucket; journal: JournalWriter; follower: JournalFollower; containers: ContainerStates; state: AppliedState }> => {
    const dir = join(root, `case-${++n}`);
    const wrap = new WrappedStore(new DirBlobStore(join(dir, 'bucket')));
    const bucket = new Bucket(wrap, { signatures: testSignatures(), prefix: 'tl', group: 'g' });
    const journal = new JournalWriter(bucket, { generation: g1, writer: 'host-a', head: null });
    writers.push(journal);
    const file = new AppliedStateFile(join(dir, 'state'), 'g');
    const state = await file.load('g');
    state.generation = g1;
    const containers = new ContainerStates();
    const follower = new JournalFollower({ bucket, log: silentLogger, file, generationCheckEvery: 20, maxRecordsPerPoll: 10_000 }, containers);
    await journal.publish(commit('full', 1));
    assert.equal(await follower.readNew(state), true);
    assert.deepEqual(containers.get('web').queue.map((r) => r.seq), [1]);
    return { wrap, bucket, journal, follower, containers, state };
  };

  it('reads the records a head announces by their keys, without listing the journal first', async () => {
    const { wrap, bucket, journal, follower, containers, state } = await setup();
    await journal.publish(commit('delta', 2));
    await journal.publish(commit('delta', 3));
    wrap.lists = 0;
    wrap.keysRead.length = 0;
    assert.equal(await follower.readNew(state), true);
    assert.deepEqual(containers.get('web').queue.map((r) => r.seq), [1, 2, 3]);
    assert.equal(wrap.lists, 0, 'no listing for two records the head announced');
    assert.deepEqual(wrap.keysRead.slice(1).sort(), [bucket.journalKey(g1, asSeq(2)), bucket.journalKey(g1, asSeq(3))]);
    // Nothing new: the conditional GET of the head alone.
    wrap.keysRead.length = 0;
    assert.equal(await follower.readNew(state), false);
    assert.deepEqual(wrap.keysRead, [bucket.headKey(g1)]);
  });

  it('a record the head announces that is missing goes through the listing, which reports the gap', async () => {
    const { wrap, bucket, journal, follower, containers, state } = await setup();
    await journal.publish(commit('delta', 2));
    await journal.publish(commit('delta', 3));
    await wrap.delete(bucket.journalKey(g1, asSeq(2)));
    wrap.lists = 0;
    await follower.readNew(state);
    assert.ok(wrap.lists >= 1, 'the listing decides what a missing record is');
    assert.deepEqual(containers.get('web').queue.map((r) => r.seq), [1, 3], 'the record after the gap is queued, the gap is not skipped silently');
    assert.match(follower.alert(() => 0) ?? '', /journal seq 2: missing from the journal/);
  });

  it('a record the head announces that does not parse goes through the listing, which reports it', async () => {
    const { wrap, bucket, journal, follower, containers, state } = await setup();
    await journal.publish(commit('delta', 2));
    await wrap.put(bucket.journalKey(g1, asSeq(2)), Buffer.from('{"not":"a record"}'));
    wrap.lists = 0;
    await follower.readNew(state);
    assert.ok(wrap.lists >= 1);
    assert.deepEqual(containers.get('web').queue.map((r) => r.seq), [1]);
    assert.match(follower.alert(() => 0) ?? '', /journal seq 2: record refused/);
  });

  it('many records announced at once are listed', async () => {
    const { wrap, journal, follower, containers, state } = await setup();
    for (let i = 2; i <= 20; i++) await journal.publish(commit('delta', i));
    wrap.lists = 0;
    await follower.readNew(state);
    assert.equal(wrap.lists, 1);
    assert.deepEqual(containers.get('web').queue.map((r) => r.seq), Array.from({ length: 20 }, (_, i) => i + 1));
  });
});

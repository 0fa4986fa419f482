// A standby reading a journal GC has thinned (issue 12, review of gc12): the records retention removed on purpose
// (each container's below its newest full checkpoint) are passed over as retired, not reported as a journal gap that
// would stay until every container staged past it; a record missing above a container's newest full is reported as
// before. The real GC (runGc) against the embedded S3 server, then the real journal follower; no engine needed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AppliedStateFile } from '../../../src/puller/applied-state.js';
import { ContainerStates } from '../../../src/puller/container-state.js';
import { JournalFollower } from '../../../src/puller/journal-follower.js';
import { asDigest, runGc, type Generation, type Seq, type S3BlobStore } from '../../../src/store/index.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger, craftRecord, sha256, WRITER } from './helpers.js';

const g1 = 1 as Generation;
const H = 3600_000;

describe('a journal thinned by GC', { timeout: 120_000 }, () => {
  let base: string;
  let s3: TestS3;
  let store: S3BlobStore;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-retired-'));
    s3 = await withS3();
    store = testS3Store(s3);
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  /** 30 records: dns at every seq divisible by 3 and at 2, web at the others; fulls of web at 1 and 20, of dns at 2
   *  and 9. Then GC with its clock two days ahead: every container keeps only its newest full and what follows. */
  async function thinned(group: string, alsoLose: number[] = []) {
    const bucket = bucketFor(store, group);
    const containers: Record<string, number> = {};
    const lastFull: Record<string, number> = {};
    for (let seq = 1; seq <= 30; seq++) {
      const name = seq === 2 || seq % 3 === 0 ? 'dns' : 'web';
      const kind = seq === 1 || seq === 2 || seq === 9 || seq === 20 ? 'full' : 'delta';
      const body = Buffer.from(`${group} ${seq}`);
      const digest = asDigest(sha256(body));
      await store.put(bucket.blobKey(digest), body);
      await bucket.writeRecord(craftRecord({ seq, parentSeq: containers[name] ?? 0, container: name, kind, digest, size: body.length }));
      containers[name] = seq;
      if (kind === 'full') lastFull[name] = seq;
    }
    await bucket.writeHead({ version: 1, generation: g1, seq: 30 as Seq, writer: WRITER, updatedAt: new Date().toISOString(), containers: containers as Record<string, Seq>, lastFull: lastFull as Record<string, Seq> });
    const report = await runGc(bucket, { retentionMs: 24 * H, graceMs: H, now: () => Date.now() + 48 * H });
    // web's 12 records below 20 and dns's 2, 3 and 6 went.
    assert.equal(report.deleted.record.objects, 15, JSON.stringify(report));
    for (const s of alsoLose) await store.delete(bucket.journalKey(g1, s as Seq));

    const stateDir = join(base, group);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    const states = new ContainerStates();
    const file = new AppliedStateFile(stateDir, group);
    const state = await file.load(group);
    const follower = new JournalFollower({ bucket, log, file, generationCheckEvery: 1, maxRecordsPerPoll: 100_000 }, states);
    follower.resumeFrom(state.cursor);
    await follower.followNewestGeneration(state);
    await follower.readNew(state);
    const queued = (name: string): string[] => states.get(name).queue.map((r) => `${r.seq}${r.kind === 'full' ? 'F' : ''}`);
    return { follower, lines, queued };
  }

  it('a new standby passes over what GC retired: no gap logged, no alert', async () => {
    const { follower, lines, queued } = await thinned('retired');
    assert.deepEqual(queued('web'), ['20F', '22', '23', '25', '26', '28', '29']);
    assert.deepEqual(queued('dns'), ['9F', '12', '15', '18', '21', '24', '27', '30']);
    assert.deepEqual(lines.filter((l) => l.includes('journal gap')), []);
    // Nothing staged yet: a gap that was reported would be alerted now.
    assert.equal(follower.alert(() => 0), null);
  });

  it('a container\'s last record missing is a gap at once (no later record of it will tell)', async () => {
    // 29 is web's last record by the head.
    const { follower, lines } = await thinned('lostlast', [29]);
    assert.equal(lines.filter((l) => l.includes('journal gap')).length, 1, lines.join('\n'));
    assert.match(follower.alert(() => 0) ?? '', /journal seq 29: missing from the journal/);
  });

  it('a record missing above a container\'s newest full is still a gap', async () => {
    // 23 is web's, after its full at 20: no retention removes it.
    const { follower, lines } = await thinned('lost', [23]);
    assert.equal(lines.filter((l) => l.includes('journal gap')).length, 1, lines.join('\n'));
    assert.match(follower.alert(() => 0) ?? '', /journal seq 23: missing from the journal/);
  });
});

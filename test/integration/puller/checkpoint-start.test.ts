// Where a standby starts a container from nothing (issue 12, item 1): at the newest full checkpoint the head names,
// never at seq 1, without reading the records before it; and a head that names something else than a full commit of
// the container (a delta, another container's record, a missing or unsigned record) only costs the whole journal,
// logged and shown, never a silent skip. The journal follower on the embedded S3 server behind the fault proxy, which
// counts the journal GETs; no engine is needed to read the journal.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { AppliedStateFile, type AppliedState } from '../../../src/puller/applied-state.js';
import { ContainerStates } from '../../../src/puller/container-state.js';
import { JournalFollower } from '../../../src/puller/journal-follower.js';
import { checkpointDue, DEFAULT_CHECKPOINT_POLICY, deltaWeight } from '../../../src/pusher/checkpoint-policy.js';
import { asDigest, type Generation, type Seq } from '../../../src/store/index.js';
import { startPullerFixture, type PullerFixture } from '../../support/puller.js';
import { bucketFor, collectingLogger, craftRecord, sha256, WRITER } from './helpers.js';

const g1 = 1 as Generation;
/** Commits of the catch-up case (the figure); TWINLAYER_CATCHUP_COMMITS sets another. */
const COMMITS = Number(process.env['TWINLAYER_CATCHUP_COMMITS'] ?? 10_000);

describe('a container started from nothing reads the journal from its newest full checkpoint', { timeout: 900_000 }, () => {
  let fx: PullerFixture;
  let caseNo = 0;
  /** Journal seqs the proxy answered a GET for, per group. */
  const gets = new Map<string, number[]>();

  before(async () => {
    fx = await startPullerFixture({ tmpPrefix: 'tl-ckpt-start-', proxy: true });
    fx.proxy.onAnswer((a) => {
      const m = /\/twinlayer\/([^/]+)\/gen\/1\/journal\/(\d{16})\.json$/.exec(a.path.split('?')[0] ?? '');
      if (a.method !== 'GET' || m === null) return;
      const list = gets.get(m[1]!) ?? [];
      list.push(Number(m[2]));
      gets.set(m[1]!, list);
    });
  });

  after(() => fx?.close());

  /** A journal written as a pusher writes it: `plan` lists, in order, the container and kind of each record. */
  /** `writers` records are written at once; `reuse` reads the journal of that group again (writing none). */
  async function journal(plan: Array<[string, 'full' | 'delta']>, maxRecordsPerPoll = 100_000, writers = 1, reuse?: string) {
    caseNo++;
    const group = reuse ?? `ck${caseNo}`;
    const writer = bucketFor(fx.store, group);
    const reader = bucketFor(fx.viaProxy, group);
    const containers: Record<string, number> = {};
    const lastFull: Record<string, number> = {};
    let seq = 0;
    const records = plan.map(([name, kind]) => {
      seq++;
      const digest = asDigest(sha256(Buffer.from(`${name} ${seq}`)));
      const rec = craftRecord({ seq, parentSeq: containers[name] ?? 0, container: name, kind, digest, size: 10 });
      containers[name] = seq;
      if (kind === 'full') lastFull[name] = seq;
      return rec;
    });
    for (let i = 0; i < records.length; i += writers) await Promise.all(records.slice(i, i + writers).map((r) => writer.writeRecord(r)));
    const writeHead = async (fulls: Record<string, number> | undefined): Promise<void> => {
      await writer.writeHead({
        version: 1, generation: g1, seq: seq as Seq, writer: WRITER, updatedAt: new Date().toISOString(),
        containers: containers as Record<string, Seq>, ...(fulls === undefined ? {} : { lastFull: fulls as Record<string, Seq> }),
      });
    };
    if (reuse === undefined) await writeHead(lastFull);
    const stateDir = join(fx.base, `${group}-${caseNo}`);
    await mkdir(stateDir, { recursive: true });
    const { log, lines } = collectingLogger();
    const states = new ContainerStates();
    const file = new AppliedStateFile(stateDir, group);
    const state: AppliedState = await file.load(group);
    const follower = new JournalFollower({ bucket: reader, log, file, generationCheckEvery: 1, maxRecordsPerPoll }, states);
    follower.resumeFrom(state.cursor);
    /** Follows the generation and reads what the head announces; the journal seqs read meanwhile. */
    const read = async (): Promise<number[]> => {
      gets.set(group, []);
      await follower.followNewestGeneration(state);
      await follower.readNew(state);
      return [...(gets.get(group) ?? [])].sort((a, b) => a - b);
    };
    const queued = (name: string): string[] => states.get(name).queue.map((r) => `${r.seq}${r.kind === 'full' ? 'F' : ''}`);
    return { group, writer, reader, state, states, follower, lines, lastFull, containers, seq: () => seq, writeHead, read, queued, file };
  }

  /** 30 records of two containers: dns at every seq divisible by 3 (and 2), web at the others; checkpoints of web at
   *  1, 17 and 20, of dns at 2 and 9. */
  const twoContainers = (): Array<[string, 'full' | 'delta']> => {
    const plan: Array<[string, 'full' | 'delta']> = [['web', 'full'], ['dns', 'full']];
    for (let i = 3; i <= 30; i++) plan.push([i % 3 === 0 ? 'dns' : 'web', i === 9 || i === 17 || i === 20 ? 'full' : 'delta']);
    return plan;
  };
  const webFrom20 = ['20F', '22', '23', '25', '26', '28', '29'];

  it('reads only from the lowest checkpoint on, and queues each container from its own', async () => {
    const plan = twoContainers();
    plan[23] = ['dns', 'full'];
    const j = await journal(plan);
    assert.deepEqual(j.lastFull, { web: 20, dns: 24 });
    const seqs = await j.read();
    // The two checked checkpoints, then the journal from 20 on: nothing below the lowest checkpoint.
    assert.deepEqual(seqs.filter((s) => s < 20), [], `GETs: ${seqs.join(',')}`);
    assert.equal(seqs.length, (j.seq() - 20 + 1) + 2, `GETs: ${seqs.join(',')}`);
    assert.deepEqual(j.queued('web'), webFrom20);
    assert.deepEqual(j.queued('dns'), ['24F', '27', '30']);
    assert.equal(j.states.get('web').lastError, null);
    assert.ok(j.lines.some((l) => l.includes('journal read from the newest full checkpoints')));
    // The cursor a restart resumes from passes nothing still queued.
    assert.equal(j.follower.durableCursor(), 19);
  });

  it('falls back to the whole journal of a container whose named checkpoint is a delta, another\'s record, missing or unsigned; says so', async () => {
    for (const lie of ['delta', 'other', 'missing', 'unsigned'] as const) {
      const j = await journal(twoContainers());
      assert.deepEqual(j.lastFull, { web: 20, dns: 9 });
      if (lie === 'delta') await j.writeHead({ web: 22, dns: 9 });
      if (lie === 'other') await j.writeHead({ web: 18, dns: 9 });
      if (lie === 'missing') await fx.store.delete(j.writer.journalKey(g1, 20 as Seq));
      if (lie === 'unsigned') {
        const rec = await j.writer.readRecord(g1, 20 as Seq);
        await fx.store.put(j.writer.journalKey(g1, 20 as Seq), Buffer.from(JSON.stringify(rec)));
      }
      const seqs = await j.read();
      assert.ok(seqs.includes(1), `${lie}: the journal is read from its start: ${seqs.join(',')}`);
      const warned = j.lines.find((l) => l.includes('head names an unusable full checkpoint'));
      assert.ok(warned !== undefined, `${lie}: logged:\n${j.lines.slice(-8).join('\n')}`);
      assert.match(warned, /"container":"web"/);
      assert.match(j.states.get('web').lastError ?? '', /the head names record \d+ as the newest full checkpoint of web, but it /, lie);
      // dns's checkpoint was fine, but the journal is read from the start for web anyway: dns passes its older records.
      assert.deepEqual(j.queued('dns'), ['9F', '12', '15', '18', '21', '24', '27', '30'], lie);
      const web = j.queued('web');
      if (lie === 'missing' || lie === 'unsigned') {
        // The record at 20 is a gap for the follower: web's queue is what was read around it, staging stops there.
        assert.deepEqual(web, ['17F', '19', '22', '23', '25', '26', '28', '29'], lie);
        assert.ok(j.lines.some((l) => l.includes('journal gap or unreadable record')), lie);
      } else {
        assert.deepEqual(web, webFrom20, lie);
      }
    }
  });

  it(`after ${COMMITS} commits checkpointed as the default policy does, a new standby reads the records from the newest checkpoint on; without lastFull, all`, async () => {
    // The kinds the pusher's default policy gives 10 000 small commits of a small container (checkpoint-policy.ts).
    const plan: Array<[string, 'full' | 'delta']> = [['counter', 'full']];
    let since = { deltas: 0, bytes: 0 };
    for (let i = 0; i < COMMITS; i++) {
      plan.push(['counter', 'delta']);
      since = { deltas: since.deltas + 1, bytes: since.bytes + deltaWeight(12) };
      const verdict = checkpointDue(DEFAULT_CHECKPOINT_POLICY, { deltaBytesSinceFull: since.bytes, deltasSinceFull: since.deltas, containerBytes: 1200, lastFullAt: Date.now(), since: Date.now() }, Date.now());
      if (verdict.due) {
        plan.push(['counter', 'full']);
        since = { deltas: 0, bytes: 0 };
      }
    }
    const j = await journal(plan, 100_000, 16);
    const lastFull = j.lastFull['counter']!;
    const head = j.seq();
    assert.ok(head - lastFull <= 129, `the newest checkpoint is at most 129 records back: ${lastFull} of ${head}`);
    const seqs = await j.read();
    assert.deepEqual(seqs.filter((s) => s < lastFull), [], 'nothing before the checkpoint');
    assert.equal(seqs.length, head - lastFull + 1 + 1, 'the records from the checkpoint to the head, and the checkpoint checked once');
    assert.equal(j.queued('counter').length, head - lastFull + 1);
    assert.equal(j.queued('counter')[0], `${lastFull}F`);

    // The same journal under a head of an older version: every record of the generation is read.
    const old = await journal(plan.slice(0, 0), 100_000, 16, j.group);
    await j.writeHead(undefined);
    const all = await old.read();
    assert.equal(all.length, head);
    console.log(JSON.stringify({ commits: COMMITS, records: head, checkpoints: plan.filter(([, k]) => k === 'full').length, journalGetsFromCheckpoint: seqs.length, journalGetsWithoutLastFull: all.length }));
  });

  it('reads from the cursor when the head is of an older version (no lastFull)', async () => {
    const j = await journal(twoContainers());
    await j.writeHead(undefined);
    const seqs = await j.read();
    assert.deepEqual(seqs, Array.from({ length: j.seq() }, (_, i) => i + 1));
    assert.deepEqual(j.queued('web'), webFrom20);
    assert.ok(j.lines.some((l) => l.includes('the head names no full checkpoints')));
  });

  it('starts a container this host already staged in the generation after what it staged, the others at their checkpoints', async () => {
    const j = await journal(twoContainers());
    j.state.generation = 1;
    j.state.containers['dns'] = { generation: 1, seq: 12, digest: null, stagedAt: null };
    j.state.cursor = 12;
    j.follower.resumeFrom(12);
    const seqs = await j.read();
    assert.deepEqual(seqs.filter((s) => s <= 12), [], seqs.join(','));
    assert.deepEqual(j.queued('dns'), ['15', '18', '21', '24', '27', '30']);
    // web starts at 20: its deltas between 13 and 19 are passed over.
    assert.deepEqual(j.queued('web'), webFrom20);
  });

  it('never starts past what a container staged in this generation, even one the head does not name', async () => {
    const j = await journal(twoContainers());
    j.state.generation = 1;
    // A head that leaves a staged container out (none of this writer's does): its records after 3 are still read.
    j.state.containers['ghost'] = { generation: 1, seq: 3, digest: null, stagedAt: null };
    const seqs = await j.read();
    assert.ok(seqs.includes(4), seqs.join(','));
    assert.deepEqual(j.queued('web'), webFrom20);
  });

  it('re-queues a replaced twin from its checkpoint, reading nothing before it; one the head names past the read position waits for it', async () => {
    const j = await journal(twoContainers());
    await j.read();
    for (const name of ['web', 'dns']) j.states.get(name).queue = [];
    gets.set(j.group, []);
    await j.follower.requeue(j.state, ['web', 'dns']);
    const seqs = [...(gets.get(j.group) ?? [])].sort((a, b) => a - b);
    assert.deepEqual(seqs.filter((s) => s < 9), [], seqs.join(','));
    assert.deepEqual(j.queued('web'), webFrom20);
    assert.deepEqual(j.queued('dns'), ['9F', '12', '15', '18', '21', '24', '27', '30']);

  });

  it('re-queues a twin whose checkpoint the head names past the read position without listing: it waits for it', async () => {
    const plan = twoContainers();
    plan.push(['web', 'delta'], ['dns', 'delta'], ['web', 'full'], ['web', 'delta']);
    const j = await journal(plan, 10);
    assert.deepEqual(j.lastFull, { web: 33, dns: 9 });
    // At most 10 records a poll: from dns's checkpoint at 9, up to 18.
    await j.read();
    assert.equal(j.follower.durableCursor(), 8);
    gets.set(j.group, []);
    await j.follower.requeue(j.state, ['web']);
    // Only the checkpoint, to check it (the reads the last poll's listing started ahead of its bound land meanwhile:
    // past the read position, never before it).
    const seqs = gets.get(j.group) ?? [];
    assert.ok(seqs.includes(33), seqs.join(','));
    assert.deepEqual(seqs.filter((s) => s <= 18), [], seqs.join(','));
    assert.deepEqual(j.queued('web'), []);
    for (let i = 0; i < 5; i++) await j.follower.readNew(j.state);
    assert.deepEqual(j.queued('web'), ['33F', '34']);
    assert.deepEqual(j.queued('dns'), ['9F', '12', '15', '18', '21', '24', '27', '30', '32']);
  });
});

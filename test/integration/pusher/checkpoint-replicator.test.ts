// The replicator's checkpoints (issue 12, item 1) on a plain directory, the real tracker, journal writer and shipped
// state over a local-directory store (faults injected at its PUTs): a checkpoint that fails holds no delta back and
// leaves the committed shipped state at the last published commit (its pending state names a record that never
// landed, which a restart discards); a due checkpoint lets the write that came first go out as a delta; the age is
// also looked at by a reconcile that finds nothing new, and nothing is checkpointed without a delta since the last.
// A checkpoint that finds the container as its last delta left it says so (sameAs), also after a delta that shipped
// racily clean paths (they are settled first); one that takes along a write made after that delta does not; one
// built while a file is being written is not published (staging a full removes what it does not name) and goes out
// later with the file. The checkpoint's walk is timed by a hook around the real tracker's full build (a write just
// before it, or one byte appended on every turn of the event loop during it).
// A due checkpoint waits for a quiet period (quietMs with no delta queued or published): not among writes that keep
// coming, but once they stop; at CHECKPOINT_MAX_DEFER_MS from when it fell due it goes under writes all the same (the
// clock is moved past that bound); one that failed on a file being written goes in the quiet period after the delta
// that ships the file, not on its retry timer.
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import PQueue from 'p-queue';

import { defaultLimits, UpperTracker, type BuiltChangeset } from '../../../src/changeset/index.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import { CHECKPOINT_MAX_DEFER_MS, type CheckpointPolicy } from '../../../src/pusher/checkpoint-policy.js';
import { waitFor } from '../../../src/lab/wait.js';
import { ContainerReplicator } from '../../../src/pusher/replicator.js';
import { ShippedStateStore } from '../../../src/pusher/shipped-state.js';
import { asDigest, Bucket, DirBlobStore, JournalWriter, type CommitRecord, type Generation } from '../../../src/store/index.js';
import { testSignatures } from '../../support/signing.js';
import { logCollector, WrappedStore } from '../store/helpers.js';

const g1 = 1 as Generation;

type Build = () => Promise<BuiltChangeset | null>;
/** Runs around every full build of the tracker, when set (the checkpoint's walk). */
interface Hooks {
  full?: ((build: Build) => Promise<BuiltChangeset | null>) | undefined;
}

/** The real tracker; its full builds go through `hooks.full`. */
class HookedTracker extends UpperTracker {
  readonly #hooks: Hooks;

  constructor(opts: ConstructorParameters<typeof UpperTracker>[0], hooks: Hooks) {
    super(opts);
    this.#hooks = hooks;
  }

  override async build(scope: 'full' | 'reconcile' | ReadonlySet<string>, opts: { emptyFull?: boolean } = {}): Promise<BuiltChangeset | null> {
    const hook = this.#hooks.full;
    if (scope === 'full' && hook !== undefined) return hook(() => super.build(scope, opts));
    return super.build(scope, opts);
  }
}

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

  /** `clock.skew` moves the replicator's clock ahead of the real one (its checkpoints' age, the quiet wait's bound).
   *  Without a quietMs a due checkpoint goes right after the delta that made it due (no quiet period). */
  async function setup(policy: CheckpointPolicy) {
    const checkpoints = { quietMs: 0, ...policy };
    const clock = { skew: 0 };
    const hooks: Hooks = {};
    const retried: string[] = [];
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
      makeTracker: (s) => new HookedTracker({ upperDir: upper, workDir: work, ...(s === undefined ? {} : { shipped: s }) }, hooks),
      bucket, journal, uploads: new PQueue({ concurrency: 2 }), shippedState, retry: (paths) => retried.push(...paths), log, checkpoints,
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
    /** The files a published changeset holds, by path. */
    const filesOf = async (rec: CommitRecord): Promise<Map<string, string>> => {
      const file = join(dir, `blob-${rec.seq}`);
      await bucket.downloadBlob(rec.digest, rec.size, file);
      const out = new Map<string, string>();
      await readChangeset(file, defaultLimits, async (e, body) => {
        const parts: Buffer[] = [];
        for await (const chunk of body.chunks()) parts.push(Buffer.from(chunk));
        if (e.type === 'file') out.set(e.path, Buffer.concat(parts).toString('utf8'));
      });
      await rm(file);
      return out;
    };
    await submit('reconcile');
    return { r, wrap, bucket, journal, shippedState, lines, submit, commit, records, kinds, clock, hooks, retried, upper, filesOf };
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
    // b went out racily clean (shipped at once after its write): settled by a reconcile before the checkpoint's walk,
    // which then restates the delta.
    assert.equal(full.sameAs, delta.seq, 'nothing was written after the delta: the checkpoint restates it');
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
    assert.equal((await c.records())[2]?.sameAs, 2, 'nothing was written after the delta: the checkpoint restates it');
    c.clock.skew = 3 * 3_600_001;
    await c.submit('reconcile');
    assert.equal(await c.kinds(), 'FdF', 'nothing new since the checkpoint: no other one');
  });

  it('a checkpoint that takes along a write made after the last delta does not say it restates that delta', async () => {
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000 });
    await c.commit('a', '1');
    c.clock.skew = 3_600_001;
    // Written after the delta went out, before the checkpoint's walk (no event for it reached the replicator).
    c.hooks.full = async (build) => {
      await writeFile(join(c.upper, 'late'), 'written between');
      return build();
    };
    await c.submit('reconcile');
    c.hooks.full = undefined;
    assert.equal(await c.kinds(), 'FdF');
    const full = (await c.records())[2];
    assert.ok(full !== undefined);
    assert.equal(full.sameAs, undefined, 'it carries a change of its own: a standby stages it');
    assert.equal((await c.filesOf(full)).get('late'), 'written between');
  });

  it('does not publish a checkpoint built while a file was being written: it goes out later, with the file (8b51e06)', async () => {
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000 });
    await c.commit('a', '1');
    await c.commit('f', 'x');
    assert.equal(await c.kinds(), 'Fdd');
    c.clock.skew = 3_600_001;
    // One byte appended to f on every turn of the event loop while the checkpoint is built: its size always moved
    // between the walk's stat and the read (at least one fs call, so one turn, lies between them), so f is torn.
    let appended = 0;
    c.hooks.full = async (build) => {
      let on = true;
      const tick = (): void => {
        if (!on) return;
        appendFileSync(join(c.upper, 'f'), 'y');
        appended++;
        setImmediate(tick);
      };
      setImmediate(tick);
      try {
        return await build();
      } finally {
        on = false;
      }
    };
    await c.submit('reconcile');
    c.hooks.full = undefined;
    assert.ok(appended > 0);
    assert.equal(await c.kinds(), 'Fdd', 'no checkpoint without f (staging a full removes what it does not name)');
    const failed = c.lines.find((l) => l['msg'] === 'checkpoint failed; deltas go on, the checkpoint is tried again later');
    assert.ok(failed !== undefined, 'the checkpoint failed');
    assert.match(JSON.stringify(failed), /changed while being read/);
    assert.ok(c.retried.includes('f'), 'f is handed back to be shipped again');
    // The collector ships f again (its retry); the checkpoint is tried again once its wait passed, after that delta.
    c.clock.skew += 11 * 60_000;
    await c.submit(new Set(['f']));
    assert.equal(await c.kinds(), 'FdddF');
    const all = await c.records();
    const [delta, full] = [all[3], all[4]];
    assert.ok(delta !== undefined && full !== undefined);
    const now = await readFile(join(c.upper, 'f'), 'utf8');
    assert.equal((await c.filesOf(delta)).get('f'), now);
    const inFull = await c.filesOf(full);
    assert.equal(inFull.get('f'), now, 'the checkpoint holds f as it is');
    assert.equal(inFull.get('a'), '1');
    assert.equal(full.sameAs, delta.seq, 'f, shipped while still racy, was settled before the checkpoint');
  });
  /** One byte appended to `file` on every turn of the event loop while the checkpoint is built: `file` is torn. */
  const appendDuringFullBuild = (upper: string, file: string) => async (build: () => Promise<BuiltChangeset | null>): Promise<BuiltChangeset | null> => {
    let on = true;
    const tick = (): void => {
      if (!on) return;
      appendFileSync(join(upper, file), 'y');
      setImmediate(tick);
    };
    setImmediate(tick);
    try {
      return await build();
    } finally {
      on = false;
    }
  };

  it('a due checkpoint waits while writes go on and goes once no delta came for the quiet period', async () => {
    const quietMs = 2000;
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000, quietMs });
    await c.commit('a', '1');
    c.clock.skew = 3_600_001;
    // A write every 100 ms for longer than the quiet period: the checkpoint is due from the first, never quiet.
    const writesFor = Date.now() + 2 * quietMs;
    let n = 0;
    while (Date.now() < writesFor) {
      await c.commit(`w${n % 3}`, `v${n}`);
      n++;
      await delay(100);
    }
    assert.equal(await c.kinds(), `Fd${'d'.repeat(n)}`, 'no checkpoint among the writes');
    const full = await waitFor('the checkpoint after the writes', 30_000, async () => (await c.records()).find((r) => r.kind === 'full' && r.seq > 1));
    const all = await c.records();
    const last = all[all.length - 2];
    assert.ok(last !== undefined && last.kind === 'delta' && full.seq === last.seq + 1, await c.kinds());
    assert.ok(Date.parse(full.publishedAt) - Date.parse(last.publishedAt) >= quietMs, 'it went after the quiet period, not right after the delta');
    assert.equal(full.sameAs, last.seq, 'nothing was written after the last delta: the checkpoint restates it');
    const logged = c.lines.find((l) => l['msg'] === 'published' && l['kind'] === 'full' && l['seq'] === full.seq);
    assert.ok(logged !== undefined && typeof logged['waitedMs'] === 'number' && logged['waitedMs'] >= 2 * quietMs, JSON.stringify(logged));
  });

  it('under writes that never stop, the checkpoint goes at the bound after the delta that finds it past it', async () => {
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000, quietMs: 30_000 });
    await c.commit('a', '1');
    c.clock.skew = 3_600_001;
    for (let i = 0; i < 5; i++) await c.commit('w', `v${i}`);
    assert.equal(await c.kinds(), 'Fdddddd', 'due, not quiet: deferred');
    // The writes go on, the bound passes (the clock moves ahead of the quiet period's end): the next delta goes out,
    // then the checkpoint, taking along what came meanwhile.
    c.clock.skew += CHECKPOINT_MAX_DEFER_MS;
    await c.commit('w', 'past the bound');
    assert.equal(await c.kinds(), 'FdddddddF');
    const logged = c.lines.find((l) => l['msg'] === 'published' && l['kind'] === 'full' && typeof l['checkpoint'] === 'string');
    assert.ok(logged !== undefined && typeof logged['waitedMs'] === 'number' && logged['waitedMs'] >= CHECKPOINT_MAX_DEFER_MS, JSON.stringify(logged));
    // Published, the next one (due at once: the moved clock makes that checkpoint old) waits afresh, not forced by
    // the old bound.
    await c.commit('w', 'after');
    assert.equal(await c.kinds(), 'FdddddddFd');
  });

  it('a checkpoint that found a file being written goes in the quiet period after the delta that ships it, not on its retry timer', async () => {
    const quietMs = 1000;
    const c = await setup({ deltaShare: 1000, maxAgeMs: 3_600_000, quietMs });
    await c.commit('a', '1');
    await c.commit('f', 'x');
    c.clock.skew = 3_600_001;
    c.hooks.full = appendDuringFullBuild(c.upper, 'f');
    // Quiet for longer than quietMs by the moved clock: the checkpoint goes now, and finds f torn.
    await c.submit('reconcile');
    c.hooks.full = undefined;
    assert.equal(await c.kinds(), 'Fdd');
    const failed = c.lines.find((l) => l['msg'] === 'checkpoint failed; deltas go on, the checkpoint is tried again later');
    assert.ok(failed !== undefined && failed['retryInMs'] === 10_000 && typeof failed['orAfter'] === 'string', JSON.stringify(failed));
    assert.ok(c.retried.includes('f'));
    const failedAt = Date.now();
    // The collector ships f again: a delta, and the checkpoint not right after it (the quiet period first).
    await c.submit(new Set(['f']));
    assert.equal(await c.kinds(), 'Fddd');
    const full = await waitFor('the checkpoint after the delta of f', 9_000, async () => (await c.records()).find((r) => r.kind === 'full' && r.seq > 1));
    assert.ok(Date.parse(full.publishedAt) - failedAt < 10_000, 'before the retry timer');
    const delta = (await c.records())[3];
    assert.ok(delta !== undefined && full.seq === delta.seq + 1);
    assert.ok(Date.parse(full.publishedAt) - Date.parse(delta.publishedAt) >= quietMs, 'after the quiet period');
    assert.equal((await c.filesOf(full)).get('f'), await readFile(join(c.upper, 'f'), 'utf8'), 'the checkpoint holds f as it is');
    assert.equal(full.sameAs, delta.seq);
  });
});

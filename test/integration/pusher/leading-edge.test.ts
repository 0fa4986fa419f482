// Small changes without the quiet debounce (issue 13, item 3): the first write after a quiet period is shipped at
// once, what follows in the same burst goes out in one more commit, and a file being written in pieces is never
// shipped torn. A real engine with busybox containers, the real Pusher, the embedded S3 server; every commit's
// changeset is read back from the bucket. Counts and contents only, no timings: the first test's quiet period is
// ten minutes, so a commit before the test flushes can only come from the leading edge. Root only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { defaultLimits } from '../../../src/changeset/index.js';
import { readChangeset } from '../../../src/changeset/tar-reader.js';
import { DockerRuntime } from '../../../src/docker/index.js';
import { importBusyboxImage } from '../../../src/lab/busybox-image.js';
import { dockerCli, startEngine, type Engine } from '../../../src/lab/engine.js';
import { waitFor } from '../../../src/lab/wait.js';
import { Pusher } from '../../../src/pusher/index.js';
import { type Bucket, type CommitRecord, type Generation, type S3BlobStore } from '../../../src/store/index.js';
import { requireRoot } from '../../support/overlay.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';
import { bucketFor, collectingLogger } from '../puller/helpers.js';

const IMAGE = 'tl-busybox:leading';
const PIECE = 4096;
const PIECES = 8;
const ROUNDS = ['a', 'b', 'c'] as const;

describe('pusher: leading edge, at most two commits per burst, never torn', { timeout: 300_000 }, () => {
  let base = '';
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let engine: Engine | undefined;
  const pushers: Pusher[] = [];
  const { log } = collectingLogger();

  const exec = (name: string, script: string): Promise<string> => dockerCli(engine!, ['exec', name, 'sh', '-c', script], 120_000);

  /** A container labelled for its own pusher (group = label = name), which ships to its own group. */
  async function protect(name: string, quietMs: number, maxMs: number): Promise<{ pusher: Pusher; bucket: Bucket }> {
    await dockerCli(engine!, ['run', '-d', '--name', name, '--label', `tl.${name}=true`, '--network', 'none', IMAGE, 'sh', '-c', 'while true; do sleep 1; done']);
    // Made before the pusher starts: a write of the container's own start-up must not land between the counts.
    await exec(name, 'mkdir -p /data');
    const bucket = bucketFor(store!, name, log);
    const pusher = new Pusher({
      runtime: new DockerRuntime({ socketPath: engine!.socketPath, mountInfoPath: engine!.mountInfoPath }),
      bucket, log, hostId: 'host-a', group: name, label: `tl.${name}`, stateDir: join(base, `state-${name}`), excludes: [],
      debounceQuietMs: quietMs, debounceMaxMs: maxMs, uploadConcurrency: 2, reconcileIntervalMs: 600_000,
    });
    pushers.push(pusher);
    await pusher.start();
    // The first full checkpoint (start() only queues it).
    await pusher.syncOnce();
    return { pusher, bucket };
  }

  async function records(bucket: Bucket, name: string): Promise<CommitRecord[]> {
    const out: CommitRecord[] = [];
    for await (const item of bucket.listRecords(1 as Generation, 0)) if ('record' in item && item.record.container === name) out.push(item.record);
    return out;
  }

  /** The regular files a commit's changeset holds: tar path -> content. */
  async function filesOf(bucket: Bucket, rec: CommitRecord): Promise<Map<string, string>> {
    const file = join(base, `blob-${rec.container}-${rec.seq}`);
    await bucket.downloadBlob(rec.digest, rec.size, file);
    const files = new Map<string, string>();
    await readChangeset(file, defaultLimits, async (e, body) => {
      const parts: Buffer[] = [];
      for await (const c of body.chunks()) parts.push(Buffer.from(c));
      if (e.type === 'file') files.set(e.path, Buffer.concat(parts).toString('latin1'));
    });
    await rm(file);
    return files;
  }

  before(async () => {
    requireRoot();
    base = await mkdtemp(join(tmpdir(), 'tl-leading-'));
    s3 = await withS3();
    store = testS3Store(s3);
    engine = await startEngine({ name: 'leading' });
    await importBusyboxImage(engine.socketPath, IMAGE);
  });

  after(async () => {
    const errors: unknown[] = [];
    for (const p of pushers) await p.stop().catch((e: unknown) => errors.push(e));
    store?.destroy();
    await engine?.stop().catch((e: unknown) => errors.push(e));
    await s3?.close().catch((e: unknown) => errors.push(e));
    if (base !== '') await rm(base, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
  });

  it('ships the first write of a burst without waiting for quiet, and the rest of the burst in one more commit', async () => {
    const name = 'burst';
    const { pusher, bucket } = await protect(name, 600_000, 1_200_000);
    const before = (await records(bucket, name)).length;
    assert.ok(before >= 1, 'the first full checkpoint is out');
    // One burst in three parts 300 ms apart: shipping each change as soon as the one before landed would make
    // three commits or more of it.
    await exec(name, 'echo "line 1" > /data/f1; sleep 0.3; for i in $(seq 2 10); do echo "line $i" > /data/f$i; done; sleep 0.3; for i in $(seq 11 20); do echo "line $i" > /data/f$i; done');
    // Ten minutes of quiet debounce: only a leading flush can publish now.
    await waitFor('the first commit of the burst', 60_000, async () => ((await records(bucket, name)).length > before ? true : undefined), 20);
    // The rest of the burst waits in the collector for ten minutes: the status counts it as waiting (an operator
    // reading lag 0 must be able to trust that everything is out).
    const waiting = await waitFor('the status counts the rest of the burst as waiting', 10_000, async () => {
      await new Promise((r) => setTimeout(r, 300));
      const st = pusher.status().containers.find((c) => c.name === name);
      return st !== undefined && st.lagMs >= 300 && st.pendingSince !== null ? st : undefined;
    }, 20);
    assert.ok(waiting.lagMs >= 300);
    // What the quiet period would flush in ten minutes.
    await pusher.syncOnce();
    const idle = pusher.status().containers.find((c) => c.name === name);
    assert.deepEqual([idle?.lagMs, idle?.pendingSince], [0, null], 'nothing waits once the burst is out');
    const burst = (await records(bucket, name)).slice(before);
    // Two as a rule; one when the first build already found the whole burst written (a very slow build).
    assert.ok(burst.length >= 1 && burst.length <= 2, `the burst gave ${burst.length} commits: ${JSON.stringify(burst.map((r) => [r.seq, r.counts]))}`);
    const first = await filesOf(bucket, burst[0]!);
    const second = burst[1] === undefined ? new Map<string, string>() : await filesOf(bucket, burst[1]);
    assert.ok(first.has('data/f1'), `the first commit holds the first write: ${[...first.keys()].join(' ')}`);
    // Every version shipped is one the file had (empty right after its open, or whole), and the later one wins.
    const final = new Map([...first, ...second]);
    for (let i = 1; i <= 20; i++) {
      for (const files of [first, second]) {
        const v = files.get(`data/f${i}`);
        assert.ok(v === undefined || v === '' || v === `line ${i}\n`, `data/f${i} shipped as ${JSON.stringify(v)}`);
      }
      assert.equal(final.get(`data/f${i}`), `line ${i}\n`, `data/f${i} is shipped whole by the end of the burst`);
    }
  });

  it('never ships a file torn while it is written slowly, in pieces, over and over', async () => {
    const name = 'slow';
    const { pusher, bucket } = await protect(name, 20, 200);
    const before = (await records(bucket, name)).length;
    // Three rounds; each truncates the file and appends eight 4 KiB pieces of its own letter, 100 ms apart: every
    // piece starts a burst of its own, so the pusher reads the file again and again while it is being written.
    const pieces = ROUNDS.map((r) => `head -c ${PIECE} /dev/zero | tr '\\0' ${r} > /tmp/piece-${r}`).join('; ');
    const rounds = ROUNDS.map((r) => `: > /data/slow; for i in $(seq 1 ${PIECES}); do cat /tmp/piece-${r} >> /data/slow; sleep 0.1; done`).join('; ');
    await exec(name, `${pieces}; ${rounds}`);
    await pusher.syncOnce();
    const recs = (await records(bucket, name)).slice(before);
    const versions: string[] = [];
    for (const rec of recs) {
      const v = (await filesOf(bucket, rec)).get('data/slow');
      if (v !== undefined) versions.push(v);
    }
    assert.ok(versions.length >= 2, `the file went out while it was being written (${versions.length} versions, ${recs.length} commits)`);
    let last = { round: -1, length: -1 };
    for (const v of versions) {
      const letter = v[0] ?? '';
      const round = v === '' ? last.round : ROUNDS.indexOf(letter as (typeof ROUNDS)[number]);
      assert.ok(v === '' || (round >= 0 && [...v].every((ch) => ch === letter)), `a version mixes two writes: ${JSON.stringify(v.slice(0, 40))}… (${v.length} bytes)`);
      assert.ok(v.length <= PIECE * PIECES, `a version of ${v.length} bytes`);
      // Commits go out in order: never an older state of the file after a newer one.
      assert.ok(round > last.round || (round === last.round && v.length >= last.length) || v === '', `version ${JSON.stringify(v.slice(0, 8))}… (${v.length} bytes) after round ${last.round} at ${last.length} bytes`);
      if (v !== '' && round > last.round) last = { round, length: v.length };
      else if (v !== '') last.length = v.length;
    }
    assert.equal(versions.at(-1), 'c'.repeat(PIECE * PIECES), 'the last commit holds the file as written');
  });
});

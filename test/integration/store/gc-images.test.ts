// GC of image objects (issue 12 items 2 and 4) against s3rver: an image object a spec names (its config digest or a
// diff id) stays; an unnamed one goes once older than the grace period, a young one stays; `--dry-run` counts them
// without deleting; a spec written while the run is between its phases saves the image it names. GC's clock runs
// ahead of the server's so that the objects written here are as old as each case needs.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { Metrics } from '../../../src/metrics/index.js';
import { asDigest, Bucket, runGc, type Digest, type S3BlobStore } from '../../../src/store/index.js';
import { sampleValue, parsePrometheusText } from '../../support/prom-text.js';
import { testSignatures } from '../../support/signing.js';
import { testS3Store, withS3, type TestS3 } from '../../support/s3.js';

const H = 3600_000;
const sha = (s: string): Digest => asDigest(createHash('sha256').update(s).digest('hex'));

describe('GC of image objects', { timeout: 120_000 }, () => {
  let s3: TestS3 | undefined;
  let store: S3BlobStore | undefined;
  let n = 0;
  before(async () => {
    s3 = await withS3();
    store = testS3Store(s3);
  });
  after(async () => {
    store?.destroy();
    await s3?.close();
  });

  /** A group with a spec naming an image (config + two layers) and image objects: those three and two unnamed. */
  async function setUp(): Promise<{ bucket: Bucket; named: string[]; unnamed: string[]; keys: () => Promise<string[]> }> {
    const bucket = new Bucket(store!, { prefix: 'tl', group: `gc-images-${n++}`, signatures: testSignatures() });
    const [config, l1, l2, o1, o2] = ['config', 'layer-1', 'layer-2', 'orphan-1', 'orphan-2'].map(sha) as [Digest, Digest, Digest, Digest, Digest];
    await bucket.putSpec('web', { name: 'web', imageId: `sha256:${config}`, imageIdentity: { configDigest: `sha256:${config}`, diffIds: [`sha256:${l1}`, `sha256:${l2}`] } });
    for (const d of [config, l1, l2, o1, o2]) await store!.put(bucket.layout.imageKey(d), Buffer.from(`object ${d}`));
    const keys = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const k of store!.list(bucket.layout.imagesPrefix)) out.push(k);
      return out.sort();
    };
    return { bucket, named: [config, l1, l2].map((d) => bucket.layout.imageKey(d)).sort(), unnamed: [o1, o2].map((d) => bucket.layout.imageKey(d)).sort(), keys };
  }

  it('keeps named image objects and young ones; deletes unnamed ones past the grace period; counts them', async () => {
    const { bucket, named, unnamed, keys } = await setUp();
    const now = (): number => Date.now() + 2 * H;

    const young = await runGc(bucket, { retentionMs: 24 * H, graceMs: 3 * H, now });
    assert.equal(young.deleted.image.objects, 0, 'younger than the grace period: kept');
    assert.deepEqual(await keys(), [...named, ...unnamed].sort());

    const dry = await runGc(bucket, { retentionMs: 24 * H, graceMs: H, now, dryRun: true });
    assert.deepEqual(dry.deleted.image, { objects: 2, bytes: unnamed.length * `object ${'0'.repeat(64)}`.length }, 'the dry run counts the two unnamed ones');
    assert.equal((await keys()).length, 5, 'and deletes nothing');
    assert.doesNotMatch(dry.problems.join('\n'), /outside the bucket layout/);

    const metrics = new Metrics({ processMetrics: false });
    const report = await runGc(bucket, { retentionMs: 24 * H, graceMs: H, now, metrics });
    assert.equal(report.deleted.image.objects, 2);
    assert.deepEqual(await keys(), named, 'the spec\'s config and layers stay');
    const text = parsePrometheusText(await metrics.render());
    assert.equal(sampleValue(text, 'twinlayer_gc_deleted_objects_total', { kind: 'image' }), 2);
  });

  it('a spec written between the phases saves the image object it names', async () => {
    const { bucket, named, unnamed, keys } = await setUp();
    const report = await runGc(bucket, {
      retentionMs: 24 * H,
      graceMs: H,
      now: () => Date.now() + 2 * H,
      betweenPhases: async () => {
        await bucket.putSpec('api', { name: 'api', imageIdentity: { configDigest: `sha256:${unnamed[0]!.slice(-64)}`, diffIds: [] } });
      },
    });
    assert.equal(report.deleted.image.objects, 1);
    assert.equal(report.spared, 1);
    assert.deepEqual(await keys(), [...named, unnamed[0]!].sort());
  });
});

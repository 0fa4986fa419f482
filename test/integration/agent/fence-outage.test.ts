// A primary's fence while the bucket is down (the embedded S3 server behind the fault proxy, refusing): every
// interval's check fails, and the log says so once, then once more when the bucket answers again with how many
// checks failed — an outage of minutes was one warning per interval before, and buried everything else in the log.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fence } from '../../../src/agent/fence.js';
import { startS3Server } from '../../../src/s3server/index.js';
import { startFaultProxy, type FaultProxy } from '../../../src/lab/fault-proxy.js';
import { Bucket, Signatures, type Generation, type S3BlobStore } from '../../../src/store/index.js';
import { createLogger } from '../../../src/log/logger.js';
import { waitFor } from '../../../src/lab/wait.js';
import { testS3Store } from '../../support/s3.js';

const BUCKET = 'twinlayer-fence-outage';

describe('fence: a bucket outage is logged once, and its end with the count', { timeout: 60_000 }, () => {
  let base: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let proxy: FaultProxy;
  let store: S3BlobStore;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'tl-fence-outage-'));
    s3 = await startS3Server({ dir: join(base, 's3'), buckets: [BUCKET], silent: true });
    proxy = await startFaultProxy(s3.endpoint);
    store = testS3Store({ endpoint: proxy.endpoint, bucket: BUCKET }, { retry: { attempts: 2, baseMs: 5, maxMs: 10 }, requestTimeoutMs: 1_000 });
  });

  after(async () => {
    store?.destroy();
    await proxy?.close();
    await s3?.close();
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('warns at the first failed check, counts the rest, and says when the bucket answers again', async () => {
    const lines: { level: string; msg: string; failedChecks?: number }[] = [];
    const log = createLogger({ level: 'debug', write: (l) => lines.push(JSON.parse(l) as { level: string; msg: string }) });
    let fenced = 0;
    const fence = new Fence({ bucket: new Bucket(store, { prefix: 'twinlayer', group: 'g', signatures: new Signatures({ signer: null, trusted: [], acceptUnsigned: true }) }), generation: 1 as Generation, intervalMs: 40, log, onFenced: () => (fenced += 1) });
    fence.start();
    try {
      await waitFor('a first confirmed check', 10_000, () => Promise.resolve(fence.lastConfirmedAt > 0 ? true : undefined));
      await proxy.refuse();
      const failing = (): number => lines.filter((l) => l.msg.startsWith('fence check failed')).length;
      await waitFor('the failure warned', 10_000, () => Promise.resolve(failing() >= 1 ? true : undefined));
      const confirmedBefore = fence.lastConfirmedAt;
      // Ten more intervals with the bucket down: still one warning.
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(failing(), 1, `one warning for the whole outage: ${JSON.stringify(lines)}`);
      assert.equal(fence.lastConfirmedAt, confirmedBefore, 'no check was confirmed while the bucket was down');
      await proxy.accept();
      await waitFor('the end of the outage logged', 10_000, () => Promise.resolve(lines.some((l) => l.msg === 'fence check answered again') ? true : undefined));
      const back = lines.find((l) => l.msg === 'fence check answered again');
      assert.ok((back?.failedChecks ?? 0) >= 2, `the failed checks counted: ${JSON.stringify(back)}`);
      assert.ok(fence.lastConfirmedAt > confirmedBefore);
      assert.equal(fenced, 0);
    } finally {
      fence.stop();
    }
  });
});

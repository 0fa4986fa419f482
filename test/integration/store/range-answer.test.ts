// A ranged GET's answer is checked before its body is used (THREATS.md: a hostile or broken server): a
// Content-Range that does not start where asked, ends past the range, ends before it starts or past the object it
// names is refused with the key and the header, never read as bytes. The server here answers every GET with one
// crafted 206, as a broken S3 server or a proxy in between would; the client is the store's real AWS SDK client.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { readRange, StoreRequestError } from '../../../src/store/index.js';
import { TEST_RETRY, testS3Store } from '../../support/s3.js';

describe('a ranged GET whose Content-Range does not fit the range asked', () => {
  let server: Server;
  let endpoint = '';
  let answer = { contentRange: '', body: Buffer.alloc(0) };

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      res.writeHead(206, { ...(answer.contentRange === '' ? {} : { 'content-range': answer.contentRange }), 'content-length': String(answer.body.length), 'content-type': 'application/octet-stream' });
      res.end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const read = (contentRange: string, bodyBytes: number): Promise<unknown> => {
    answer = { contentRange, body: Buffer.alloc(bodyBytes, 7) };
    const store = testS3Store({ endpoint, bucket: 'b' }, { retry: { ...TEST_RETRY, attempts: 1 } });
    return readRange(store, 'c/blob', 100, 100);
  };

  it('reads an answer that fits: the range asked, or less where the object ends', async () => {
    assert.deepEqual(await read('bytes 100-199/1000', 100), { status: 'ok', body: Buffer.alloc(100, 7), objectSize: 1000 });
    assert.deepEqual(await read('bytes 100-149/150', 50), { status: 'ok', body: Buffer.alloc(50, 7), objectSize: 150 });
  });

  for (const [what, contentRange] of [
    ['starts elsewhere', 'bytes 0-99/1000'],
    ['ends past the range', 'bytes 100-299/1000'],
    ['ends before it starts', 'bytes 100-50/1000'],
    ['ends past the object it names', 'bytes 100-199/150'],
    ['is missing', ''],
    ['is short of the range while the object it names goes on', 'bytes 100-149/1000'],
    ['names bounds past any safe integer', 'bytes 100-199/99999999999999999999'],
  ] as const) {
    it(`refuses one that ${what}, naming the key and the header`, async () => {
      await assert.rejects(read(contentRange, 100), (err: unknown) => {
        assert.ok(err instanceof StoreRequestError, String(err));
        assert.match(err.message, /did not answer the range 100\+100/);
        assert.match(err.message, new RegExp(`Content-Range ${JSON.stringify(contentRange === '' ? null : contentRange).replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')}`));
        assert.match(err.message, /key=c\/blob/);
        return true;
      });
    });
  }
});

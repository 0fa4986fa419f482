// How the lean small GET names an error answer: the S3 error document's Code becomes the error's name (the retry and
// error rules of the store decide by it, as they did with the SDK's errors), its status the $metadata's.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseErrorBody, SmallGetHttpError } from '../../../src/store/s3-small-get.js';

describe('parseErrorBody', () => {
  it("takes the S3 error document's code and message", () => {
    const err = parseErrorBody(404, '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>b</BucketName></Error>');
    assert.ok(err instanceof SmallGetHttpError);
    assert.equal(err.name, 'NoSuchBucket');
    assert.equal(err.message, 'The specified bucket does not exist');
    assert.deepEqual(err.$metadata, { httpStatusCode: 404 });
  });

  it('decodes the XML entities of the message', () => {
    assert.equal(parseErrorBody(400, '<Error><Code>InvalidArgument</Code><Message>a &lt;b&gt; &amp; &quot;c&apos;</Message></Error>').message, 'a <b> & "c\'');
  });

  it('names an answer without a usable code by its status', () => {
    for (const [status, body, name] of [
      [503, '', 'InternalError'],
      [403, 'Forbidden', 'Http403'],
      [400, '<Error><Code>not a code</Code></Error>', 'Http400'],
      [500, `<Error><Code>${'A'.repeat(101)}</Code></Error>`, 'InternalError'],
    ] as const) {
      const err = parseErrorBody(status, body);
      assert.equal(err.name, name, body);
      assert.equal(err.$metadata.httpStatusCode, status);
      assert.equal(err.message, `HTTP ${status}`);
    }
  });
});

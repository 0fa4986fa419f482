import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { parseMountPoints, readMountPoints } from '../../../src/docker/index.js';

describe('parseMountPoints', () => {
  it('reads the 5th field and unescapes octal (space, backslash)', () => {
    const text = [
      '42 27 254:0 /tmp/x/data /tmp/x/data rw,relatime shared:1 - ext4 /dev/vda rw',
      '46 42 0:39 / /tmp/x/data/overlay2/abc/merged rw,relatime shared:2 - overlay overlay rw,lowerdir=/a:/b',
      '47 42 0:40 / /tmp/with\\040space/m\\134n rw - tmpfs tmpfs rw',
      '',
    ].join('\n');
    assert.deepEqual(parseMountPoints(text), ['/tmp/x/data', '/tmp/x/data/overlay2/abc/merged', '/tmp/with space/m\\n']);
  });

  it('ignores short or empty lines', () => {
    assert.deepEqual(parseMountPoints('\n1 2 3\n'), []);
  });

  it('finds / in this process\'s own mountinfo', async () => {
    assert.ok((await readMountPoints()).has('/'));
  });
});

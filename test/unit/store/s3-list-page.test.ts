// How a ListObjects page is read without the AWS SDK (src/store/s3-list-page.ts): what S3 sends is read whole and
// exactly; anything malformed, or a page that is not an answer to what was asked, is refused with the prefix named.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { StoreRequestError } from '../../../src/store/errors.js';
import { parseListPage, readXml } from '../../../src/store/s3-list-page.js';

const where = { endpoint: 'http://127.0.0.1:1', bucket: 'b' };
const NOW = 1_700_000_000_000;

function page(contents: string, truncated = 'false', extra = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>tl/</Prefix><Marker/>`
    + `<MaxKeys>1000</MaxKeys><IsTruncated>${truncated}</IsTruncated>${extra}${contents}</ListBucketResult>`;
}
function item(key: string, size = '12', lastModified = '2026-12-07T18:00:00.000Z'): string {
  return `<Contents><Key>${key}</Key><LastModified>${lastModified}</LastModified><ETag>&quot;0123&quot;</ETag><Size>${size}</Size>`
    + '<StorageClass>STANDARD</StorageClass><Owner><ID>123</ID><DisplayName>me</DisplayName></Owner></Contents>';
}

describe('parseListPage', () => {
  it('reads the keys, sizes and times of a page as S3 writes it, entities and character references decoded', () => {
    const xml = page(`\n  ${item('tl/a &amp; b &lt;c&gt; &quot;d&apos;', '0')}\n  ${item('tl/b&#233;&#x1F600;', '5', '2026-12-07T18:00:01Z')}\n`);
    const got = parseListPage(xml, 'tl/', undefined, NOW, where);
    assert.deepEqual(got, {
      isTruncated: false,
      objects: [
        { key: 'tl/a & b <c> "d\'', size: 0, lastModified: Date.parse('2026-12-07T18:00:00.000Z') },
        { key: 'tl/bé😀', size: 5, lastModified: Date.parse('2026-12-07T18:00:01Z') },
      ],
    });
  });

  it('reads an empty listing and a truncated page; a missing size or time is 0 / now', () => {
    assert.deepEqual(parseListPage(page(''), 'tl/', undefined, NOW, where), { isTruncated: false, objects: [] });
    const got = parseListPage(page('<Contents><Key>tl/x</Key></Contents>', 'true'), 'tl/', 'tl/w', NOW, where);
    assert.deepEqual(got, { isTruncated: true, objects: [{ key: 'tl/x', size: 0, lastModified: NOW }] });
  });

  it('refuses malformed XML, naming the prefix', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /no root element/],
      ['not xml', /text outside the root element/],
      [page(item('tl/a')).replace('</ListBucketResult>', ''), /ends inside <ListBucketResult>/],
      [page(item('tl/a')).replace('</Key>', '</Size>'), /<\/Size> closes <Key>/],
      [page(item('tl/a &copy;')), /unknown character reference "&copy;"/],
      [page(item('tl/a & b')), /a bare & in text/],
      [page(item('tl/a&#0;')), /unknown character reference "&#0;"/],
      [page(item('tl/a&#xD800;')), /unknown character reference "&#xD800;"/],
      [page(item('tl/a<!-- x -->')), /no tag at offset/],
      [page(item('tl/<![CDATA[a]]>')), /no tag at offset/],
      [`<!DOCTYPE x [<!ENTITY e "tl/a">]>${page('')}`, /no tag at offset 0/],
      [`${page('')}<ListBucketResult/>`, /a second root element/],
      [page(item('tl/a')).slice(0, -3), /an unterminated tag/],
      [page('<Contents><1Key>tl/a</1Key></Contents>'), /no tag at offset/],
      [page('<Contents><Key a="x>y">tl/a</Key></Contents>'), /no tag at offset/],
      [page('<Contents><Key>tl/a</Key x="1"></Contents>'), /no tag at offset/],
      [page('<Contents><Key>tl/a</Key/></Contents>'), /no tag at offset/],
      [page('<Contents>tl/a<Key>tl/a</Key></Contents>'), /<Contents> mixes text and elements/],
      [page('<Contents><Key>tl/a<b/></Key></Contents>'), /<Key> mixes text and elements/],
      [page('<Contents><Key><b/></Key></Contents>'), /<Key> holds elements/],
      [page('<Contents><Key>tl/a</Key><Key>tl/b</Key></Contents>'), /<Contents> has two <Key>/],
      [`<a>${'<b>'.repeat(10)}${'</b>'.repeat(10)}</a>`, /nested deeper than 8/],
      ['<Error><Code>NoSuchBucket</Code></Error>', /the root element is <Error>, not <ListBucketResult>/],
      [page(item('tl/a')).replace(/<IsTruncated>false<\/IsTruncated>/, ''), /isTruncated: /],
      [page(item('tl/a')).replace('<IsTruncated>false', '<IsTruncated>maybe'), /isTruncated: /],
      [page('<Contents><Size>1</Size></Contents>'), /contents\.0\.key: /],
      [page(item('tl/a', '-1')), /contents\.0\.size: a size that is not a decimal integer/],
      [page(item('tl/a', '9999999999999999')), /contents\.0\.size: a size past 2\^53/],
      [page(item('tl/a', '1', 'yesterday')), /contents\.0\.lastModified: a LastModified that is not a date/],
      [page(item(`tl/${'x'.repeat(1022)}`)), /a key longer than 1024 bytes/],
    ];
    for (const [xml, reason] of cases) {
      assert.throws(() => parseListPage(xml, 'tl/', undefined, NOW, where), (err: unknown) => {
        assert.ok(err instanceof StoreRequestError, `${xml}: ${String(err)}`);
        assert.match(err.message, /^the S3 server's listing of prefix "tl\/" is malformed: /, xml);
        assert.match(err.message, reason, xml);
        assert.equal(err.context['prefix'], 'tl/');
        return true;
      });
    }
  });

  it('reads pages the SDK read: keys in the embedded server\'s directory order, keys after the marker in UTF-8 byte order, control characters', () => {
    // s3rver walks its directories: web/ before web-db/ (as strings "web-" sorts before "web/").
    const dirOrder = parseListPage(page(item('tl/web/spec.json') + item('tl/web-db/spec.json')), 'tl/', undefined, NOW, where);
    assert.deepEqual(dirOrder.objects.map((o) => o.key), ['tl/web/spec.json', 'tl/web-db/spec.json']);
    // S3 orders keys by their UTF-8 bytes: U+1F600 (F0 9F …) after U+FF01 (EF BC 81), though not in UTF-16.
    const utf8 = parseListPage(page(item('tl/\u{1F600}'), 'true'), 'tl/', 'tl/\uFF01', NOW, where);
    assert.deepEqual(utf8.objects.map((o) => o.key), ['tl/\u{1F600}']);
    const control = parseListPage(page(item('tl/b&#x1;c')), 'tl/', undefined, NOW, where);
    assert.deepEqual(control.objects.map((o) => o.key), ['tl/b\u0001c']);
  });

  it('refuses a page that does not answer the request: a key outside the prefix, not after the marker, a truncated page without keys', () => {
    const cases: Array<[string, string | undefined, RegExp]> = [
      [page(item('other/a')), undefined, /key "other\/a" is not under the prefix/],
      [page(item('tl/a')), 'tl/a', /key "tl\/a" does not sort after the marker "tl\/a"/],
      [page(item('tl/a')), 'tl/b', /key "tl\/a" does not sort after the marker "tl\/b"/],
      [page(item('tl/c') + item('tl/a')), 'tl/b', /key "tl\/a" does not sort after the marker "tl\/b"/],
      [page(item('tl/\uFF01')), 'tl/\u{1F600}', /does not sort after the marker/],
      [page('', 'true'), 'tl/a', /a truncated page without keys/],
    ];
    for (const [xml, marker, reason] of cases) {
      assert.throws(() => parseListPage(xml, 'tl/', marker, NOW, where), (err: unknown) => {
        assert.ok(err instanceof StoreRequestError, String(err));
        assert.match(err.message, reason);
        assert.equal(err.context['marker'], marker);
        return true;
      });
    }
  });
});

describe('readXml', () => {
  it('reads attributes, self-closing elements and a byte-order mark before the declaration', () => {
    const root = readXml(`\uFEFF<?xml version='1.0' encoding="UTF-8"?><r a="1" b='x y'><e/><f>t</f></r>\n`);
    assert.deepEqual(root, { name: 'r', text: '', children: [{ name: 'e', children: [], text: '' }, { name: 'f', children: [], text: 't' }] });
  });
});

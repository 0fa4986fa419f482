// Conditional writes on the embedded S3 server: If-None-Match: * creates only, If-Match replaces only the named
// version, both atomic against concurrent PUTs of the key. Plain s3rver ignores both (shown side by side), which
// is why the embedded server wraps it: generation claims need a create that exactly one writer wins.
// Requests are plain HTTP (s3rver serves anonymous requests) so each status and error body is seen as sent.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import S3rver from 's3rver';

import { startS3Server, type S3Server } from '../../../src/s3server/index.js';
import { waitFor } from '../../../src/lab/wait.js';

const BUCKET = 'cond-test';
const md5 = (s: string): string => `"${createHash('md5').update(s).digest('hex')}"`;

interface Answer {
  status: number;
  body: string;
  etag: string | null;
}

async function put(endpoint: string, key: string, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${endpoint}/${BUCKET}/${key}`, { method: 'PUT', body, headers, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text(), etag: res.headers.get('etag') };
}

async function get(endpoint: string, key: string): Promise<Answer> {
  const res = await fetch(`${endpoint}/${BUCKET}/${key}`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text(), etag: res.headers.get('etag') };
}

function assertPreconditionFailed(a: Answer, condition: string): void {
  assert.equal(a.status, 412, a.body);
  assert.match(a.body, /<Code>PreconditionFailed<\/Code>/);
  assert.match(a.body, new RegExp(`<Condition>${condition}</Condition>`));
}

/**
 * Sends a PUT's headers (Expect: 100-continue, so the server has taken the request when we go on) and part of its
 * body; the caller cuts the connection with the returned socket.
 */
async function startPartialPut(port: number, key: string, headers: Record<string, string>): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const continued = new Promise<void>((resolve, reject) => {
    sock.once('data', (d: Buffer) => (d.toString().startsWith('HTTP/1.1 100') ? resolve() : reject(new Error(`unexpected answer: ${d.toString()}`))));
  });
  sock.write(`PUT /${BUCKET}/${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\nExpect: 100-continue\r\n${extra}\r\n`);
  await continued;
  sock.write('0123456789');
  return sock;
}

describe('embedded S3 server: conditional writes', () => {
  let dir = '';
  let ours: S3Server;
  let plain: S3rver;
  let plainEndpoint = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-s3cond-'));
    ours = await startS3Server({ dir: join(dir, 'ours'), buckets: [BUCKET] });
    plain = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(dir, 'plain'), vhostBuckets: false, configureBuckets: [{ name: BUCKET }] });
    const addr = await plain.run();
    plainEndpoint = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await ours?.close();
    plain?.httpServer?.closeAllConnections();
    await plain?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('plain s3rver ignores If-None-Match and overwrites; ours answers 412 and keeps the first body', async () => {
    for (const endpoint of [plainEndpoint, ours.endpoint]) {
      assert.equal((await put(endpoint, 'race/claim.json', 'first', { 'If-None-Match': '*' })).status, 200);
    }
    const plainSecond = await put(plainEndpoint, 'race/claim.json', 'second', { 'If-None-Match': '*' });
    assert.equal(plainSecond.status, 200, 'plain s3rver honours If-None-Match now: the wrapper may be obsolete');
    assert.equal((await get(plainEndpoint, 'race/claim.json')).body, 'second');

    assertPreconditionFailed(await put(ours.endpoint, 'race/claim.json', 'second', { 'If-None-Match': '*' }), 'If-None-Match');
    assert.equal((await get(ours.endpoint, 'race/claim.json')).body, 'first');
  });

  it('If-None-Match: * creates a new key and refuses an existing one', async () => {
    const created = await put(ours.endpoint, 'inm/a', 'one', { 'If-None-Match': '*' });
    assert.equal(created.status, 200);
    assert.equal(created.etag, md5('one'));
    assertPreconditionFailed(await put(ours.endpoint, 'inm/a', 'two', { 'If-None-Match': '*' }), 'If-None-Match');
    const now = await get(ours.endpoint, 'inm/a');
    assert.equal(now.body, 'one');
    assert.equal(now.etag, md5('one'));
    // An unconditional PUT still overwrites; a deleted key can be created again.
    assert.equal((await put(ours.endpoint, 'inm/a', 'three')).status, 200);
    assert.equal((await get(ours.endpoint, 'inm/a')).body, 'three');
    assert.equal((await fetch(`${ours.endpoint}/${BUCKET}/inm/a`, { method: 'DELETE' })).status, 204);
    assert.equal((await put(ours.endpoint, 'inm/a', 'four', { 'If-None-Match': '*' })).status, 200);
    assert.equal((await get(ours.endpoint, 'inm/a')).body, 'four');
  });

  it('If-Match replaces only the named version; a wrong ETag or a missing key is 412', async () => {
    assert.equal((await put(ours.endpoint, 'im/a', 'v1')).status, 200);
    const v1 = md5('v1');
    assertPreconditionFailed(await put(ours.endpoint, 'im/a', 'x', { 'If-Match': md5('something else') }), 'If-Match');
    assertPreconditionFailed(await put(ours.endpoint, 'im/missing', 'x', { 'If-Match': v1 }), 'If-Match');
    assertPreconditionFailed(await put(ours.endpoint, 'im/missing', 'x', { 'If-Match': '*' }), 'If-Match');
    assert.equal((await get(ours.endpoint, 'im/a')).body, 'v1');
    assert.equal((await get(ours.endpoint, 'im/missing')).status, 404);

    const replaced = await put(ours.endpoint, 'im/a', 'v2', { 'If-Match': v1 });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.etag, md5('v2'));
    // The old ETag no longer matches; the unquoted form and `*` of the current one do.
    assertPreconditionFailed(await put(ours.endpoint, 'im/a', 'v3', { 'If-Match': v1 }), 'If-Match');
    assert.equal((await put(ours.endpoint, 'im/a', 'v3', { 'If-Match': md5('v2').slice(1, -1) })).status, 200);
    assert.equal((await put(ours.endpoint, 'im/a', 'v4', { 'If-Match': '*' })).status, 200);
    assert.equal((await get(ours.endpoint, 'im/a')).body, 'v4');
  });

  it('20 concurrent creates of one key: exactly one 200, and the stored body is the winner’s', async () => {
    for (let round = 0; round < 3; round++) {
      const key = `concurrent/${round}/claim.json`;
      const bodies = Array.from({ length: 20 }, (_, i) => `{"writer":${i},"round":${round}}`);
      const answers = await Promise.all(bodies.map((b) => put(ours.endpoint, key, b, { 'If-None-Match': '*' })));
      const winners = answers.flatMap((a, i) => (a.status === 200 ? [i] : []));
      assert.equal(winners.length, 1, `round ${round}: statuses ${answers.map((a) => a.status).join(',')}`);
      for (const a of answers) if (a.status !== 200) assertPreconditionFailed(a, 'If-None-Match');
      const stored = await get(ours.endpoint, key);
      assert.equal(stored.body, bodies[winners[0] ?? -1]);
      assert.equal(stored.etag, answers[winners[0] ?? -1]?.etag);
    }
  });

  it('10 concurrent If-Match replacements of one version: exactly one wins', async () => {
    assert.equal((await put(ours.endpoint, 'concurrent/head.json', 'base')).status, 200);
    const bodies = Array.from({ length: 10 }, (_, i) => `next-${i}`);
    const answers = await Promise.all(bodies.map((b) => put(ours.endpoint, 'concurrent/head.json', b, { 'If-Match': md5('base') })));
    const winners = answers.flatMap((a, i) => (a.status === 200 ? [i] : []));
    assert.equal(winners.length, 1, answers.map((a) => a.status).join(','));
    assert.equal((await get(ours.endpoint, 'concurrent/head.json')).body, bodies[winners[0] ?? -1]);
  });

  it('refuses conditions it does not check instead of ignoring them', async () => {
    await put(ours.endpoint, 'other/a', 'x');
    const etagList = await put(ours.endpoint, 'other/a', 'y', { 'If-None-Match': md5('x') });
    assert.equal(etagList.status, 501, etagList.body);
    assert.match(etagList.body, /<Code>NotImplemented<\/Code>/);
    const del = await fetch(`${ours.endpoint}/${BUCKET}/other/a`, { method: 'DELETE', headers: { 'If-Match': md5('x') } });
    assert.equal(del.status, 501);
    const copy = await fetch(`${ours.endpoint}/${BUCKET}/other/b`, { method: 'PUT', headers: { 'x-amz-copy-source': `/${BUCKET}/other/a`, 'If-None-Match': '*' } });
    assert.equal(copy.status, 501);
    assert.equal((await get(ours.endpoint, 'other/a')).body, 'x');
    assert.equal((await get(ours.endpoint, 'other/b')).status, 404);
  });

  it('a conditional create cut off mid-body creates nothing', async () => {
    const sock = await startPartialPut(ours.port, 'cut/claim.json', { 'If-None-Match': '*' });
    sock.destroy();
    assert.equal((await get(ours.endpoint, 'cut/claim.json')).status, 404);
    assert.equal((await put(ours.endpoint, 'cut/claim.json', 'whole', { 'If-None-Match': '*' })).status, 200);
    assert.equal((await get(ours.endpoint, 'cut/claim.json')).body, 'whole');
  });

  it('a plain PUT cut off mid-body does not hold its key: the next PUT of the key completes', async () => {
    const sock = await startPartialPut(ours.port, 'cut/head.json', {});
    // The server has opened the object's temp file: its write (and so the key's lock) is under way when the client goes.
    const temps = async (): Promise<string[]> =>
      (await readdir(join(dir, 'ours', BUCKET, 'cut')).catch(() => [])).filter((n) => n.startsWith('head.json._S3rver_object.tl-') && n.endsWith('.tmp'));
    await waitFor('the server to open the object\'s temp file', 5_000, async () => ((await temps()).length > 0 ? true : undefined), 5);
    sock.destroy();
    assert.equal((await put(ours.endpoint, 'cut/head.json', 'after the cut')).status, 200);
    assert.equal((await get(ours.endpoint, 'cut/head.json')).body, 'after the cut');
    assertPreconditionFailed(await put(ours.endpoint, 'cut/head.json', 'y', { 'If-None-Match': '*' }), 'If-None-Match');
    assert.deepEqual(await temps(), [], 'the cut upload left no temp file');
  });
  it('GETs racing plain PUTs of one key read one whole version each, under its own ETag', async () => {
    // Lengths differ, so a body cut at another version's length or a version under another's ETag shows.
    const versions = ['a'.repeat(300), 'b'.repeat(4000), 'c'.repeat(1500), 'd'.repeat(9000)];
    assert.equal((await put(ours.endpoint, 'race/head.json', versions[0]!)).status, 200);
    let writing = true;
    const writer = (async () => {
      try {
        for (let i = 1; i <= 400; i++) assert.equal((await put(ours.endpoint, 'race/head.json', versions[i % versions.length]!)).status, 200);
      } finally {
        writing = false;
      }
    })();
    const seen: string[] = [];
    const reader = async (): Promise<void> => {
      for (let n = 0; n < 100_000 && writing; n++) {
        const a = await get(ours.endpoint, 'race/head.json');
        assert.equal(a.status, 200, a.body);
        assert.ok(versions.includes(a.body), `a GET read ${a.body.length} bytes starting ${JSON.stringify(a.body.slice(0, 3))}: no version whole`);
        assert.equal(a.etag, md5(a.body), 'the ETag is the MD5 of the body served with it');
        seen.push(a.body[0]!);
      }
    };
    await Promise.all([writer, reader(), reader(), reader()]);
    assert.ok(new Set(seen).size >= 2, `the readers saw the versions change (${seen.length} reads)`);
  });
  it('a PUT stalled mid-body holds no key: GETs read the current version and another PUT of the key completes', async () => {
    assert.equal((await put(ours.endpoint, 'stall/head.json', 'v1')).status, 200);
    // A writer frozen mid-upload (SIGSTOP, a stalled link) keeps its connection open with part of its body sent.
    const sock = await startPartialPut(ours.port, 'stall/head.json', {});
    try {
      const temps = async (): Promise<string[]> =>
        (await readdir(join(dir, 'ours', BUCKET, 'stall')).catch(() => [])).filter((n) => n.startsWith('head.json._S3rver_object.tl-') && n.endsWith('.tmp'));
      await waitFor('the stalled upload to be received into its temp file', 5_000, async () => ((await temps()).length > 0 ? true : undefined), 5);
      // Each request has 5 s (AbortSignal.timeout in get/put): a key held by the stalled upload would time them out.
      assert.equal((await get(ours.endpoint, 'stall/head.json')).body, 'v1');
      assert.equal((await put(ours.endpoint, 'stall/head.json', 'v2')).status, 200);
      const after = await get(ours.endpoint, 'stall/head.json');
      assert.deepEqual([after.body, after.etag], ['v2', md5('v2')]);
    } finally {
      sock.destroy();
    }
  });
});

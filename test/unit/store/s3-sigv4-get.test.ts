// The lean GET's signer must sign exactly as the SDK's signer (@smithy/signature-v4, as s3-small-get.ts used it
// before): the same headers and the same Authorization, for the requests the store sends (keys that need escaping,
// listing queries, If-None-Match, a session token), across a day boundary (its cached key must follow the date) and a
// change of credentials (a refreshed role's).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Sha256 } from '@smithy/core/checksum';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';

import { escapeRfc3986, GetSigner } from '../../../src/store/s3-sigv4-get.js';

interface Case { path: string; query: Record<string, string>; headers: Record<string, string> }

async function sdkSign(region: string, credentials: AwsCredentialIdentity, date: Date, c: Case): Promise<Record<string, string>> {
  const signer = new SignatureV4({ credentials, region, service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
  const signed = await signer.sign({ method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 4569, path: c.path, query: c.query, headers: c.headers }, { signingDate: date });
  return signed.headers;
}

const keyPath = (bucket: string, key: string): string => `/${bucket}/${key.split('/').map(escapeRfc3986).join('/')}`;

const cases: Case[] = [
  { path: keyPath('b', 'twinlayer/g/gen/0000000001/head.json'), query: {}, headers: { host: '127.0.0.1:4569', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
  { path: keyPath('b', 'twinlayer/g/gen/0000000001/head.json'), query: {}, headers: { host: '127.0.0.1:4569', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'if-none-match': '"9b2cf535f27731c974343645a3985328"' } },
  { path: keyPath('my-bucket', "specs/web proxy (1)/ü*'!~.json"), query: {}, headers: { host: 'localhost:9000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD', 'if-none-match': '  "a  b"\t' } },
  { path: '/b', query: { 'max-keys': '1000', prefix: 'twinlayer/g/specs/', marker: 'twinlayer/g/specs/web proxy/spec.json' }, headers: { host: '127.0.0.1:4569', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
  { path: '/', query: { prefix: "a*b(c)!'~ é/", 'max-keys': '7', 'A-upper': 'x' }, headers: { host: 'b.s3.eu-west-1.amazonaws.com', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } },
];

describe('GetSigner', () => {
  it("signs each request as the SDK's signer does", async () => {
    const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
    const signer = new GetSigner('eu-west-1');
    const date = new Date('2026-12-07T21:58:03.456Z');
    for (const c of cases) {
      assert.deepEqual(signer.sign(credentials, date, c.path, c.query, c.headers), await sdkSign('eu-west-1', credentials, date, c), c.path);
    }
  });

  it('signs a session token in, as the SDK does', async () => {
    const credentials = { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'secret', sessionToken: 'FwoGZXIvYXdzE//token+with/chars=' };
    const signer = new GetSigner('us-east-1');
    const date = new Date('2026-01-01T00:00:00.000Z');
    const c = cases[1]!;
    const ours = signer.sign(credentials, date, c.path, c.query, c.headers);
    assert.equal(ours['x-amz-security-token'], credentials.sessionToken);
    assert.deepEqual(ours, await sdkSign('us-east-1', credentials, date, c));
  });

  it('derives its signing key again for a new day and for new credentials', async () => {
    const signer = new GetSigner('us-east-1');
    const c = cases[0]!;
    const first = { accessKeyId: 'A1', secretAccessKey: 'one' };
    const second = { accessKeyId: 'A1', secretAccessKey: 'two' };
    const steps: [AwsCredentialIdentity, Date][] = [
      [first, new Date('2026-12-07T23:59:59.999Z')],
      [first, new Date('2026-12-08T00:00:00.000Z')],
      [second, new Date('2026-12-08T00:00:01.000Z')],
      [first, new Date('2026-12-08T00:00:02.000Z')],
    ];
    const signatures = new Set<string>();
    for (const [credentials, date] of steps) {
      const ours = signer.sign(credentials, date, c.path, c.query, c.headers);
      assert.deepEqual(ours, await sdkSign('us-east-1', credentials, date, c), `${credentials.secretAccessKey} at ${date.toISOString()}`);
      signatures.add(ours['authorization'] ?? '');
    }
    assert.equal(signatures.size, steps.length);
  });

  it('leaves the headers SigV4 does not sign out of the signature', async () => {
    const signer = new GetSigner('us-east-1');
    const credentials = { accessKeyId: 'A', secretAccessKey: 'B' };
    const date = new Date('2026-12-07T12:00:00.000Z');
    const c = { ...cases[0]!, headers: { ...cases[0]!.headers, 'user-agent': 'x', 'proxy-authorization': 'y', connection: 'keep-alive' } };
    const ours = signer.sign(credentials, date, c.path, c.query, c.headers);
    assert.match(ours['authorization'] ?? '', /SignedHeaders=host;x-amz-content-sha256;x-amz-date,/);
    assert.deepEqual(ours, await sdkSign('us-east-1', credentials, date, c));
  });
});

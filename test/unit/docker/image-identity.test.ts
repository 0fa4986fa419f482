// Image identity across image stores (issue 11): what a manifest or an index in containerd's content store says of an
// image's config, checked against its digest, and the spec field that carries the identity.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { inspectSchema, manifestForPlatform, parseContentDocument, sameIdentity, specDigest, specFromInspect, twinSpecSchema } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
// The manifest dockerd 26 made for `docker import` here (ctr content get of the image id).
const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:fee9a6d63186c403fe00f3a5fcad8eda55d67c1a6c177a27e953f7bd0222791e","size":291},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:f58b78a4c3ae30f6c5d13a17d5f0aa82d82aced36a30fdbb926a0c3ffedff373","size":1064459}]}');

describe('parseContentDocument', () => {
  it('reads the config digest of a manifest whose bytes have the digest asked for', () => {
    assert.equal(digestOf(manifest), 'sha256:f3e8fbb6de6e783e9615d956f305120dd69748b79a281c3b50c97453d3b0675e', 'the image id dockerd 26 gave it');
    assert.deepEqual(parseContentDocument(manifest, digestOf(manifest)), { kind: 'manifest', configDigest: 'sha256:fee9a6d63186c403fe00f3a5fcad8eda55d67c1a6c177a27e953f7bd0222791e' });
  });

  it('refuses bytes of another digest, non-JSON and JSON of another shape', () => {
    assert.throws(() => parseContentDocument(manifest, d('0')), /has digest sha256:f3e8/);
    const junk = Buffer.from('not json');
    assert.throws(() => parseContentDocument(junk, digestOf(junk)), /is not JSON/);
    const other = Buffer.from('{"schemaVersion":2,"config":{"digest":"md5:x"},"layers":[]}');
    assert.throws(() => parseContentDocument(other, digestOf(other)), /neither an image manifest nor an index/);
  });

  it('lists an index\'s manifests with their platforms; the image\'s platform picks one', () => {
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { digest: d('a'), platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { digest: d('b'), platform: { os: 'linux', architecture: 'amd64' } },
        { digest: d('c'), platform: { os: 'unknown', architecture: 'unknown' } },
        { digest: d('e') },
      ],
    }));
    const doc = parseContentDocument(index, digestOf(index));
    assert.ok(doc.kind === 'index');
    assert.equal(manifestForPlatform(doc.manifests, { os: 'linux', architecture: 'amd64' }), d('b'));
    assert.equal(manifestForPlatform(doc.manifests, { os: 'linux', architecture: 'arm64', variant: 'v8' }), d('a'));
    assert.equal(manifestForPlatform(doc.manifests, { os: 'linux', architecture: 'arm64', variant: 'v7' }), null);
    assert.equal(manifestForPlatform(doc.manifests, { os: 'linux', architecture: 's390x' }), null);
  });
});

describe('image identity in specs', () => {
  const identity = { configDigest: d('c'), diffIds: [d('1'), d('2')] };

  it('sameIdentity compares the config digest and every diff id in order', () => {
    assert.equal(sameIdentity(identity, { configDigest: d('c'), diffIds: [d('1'), d('2')] }), true);
    assert.equal(sameIdentity(identity, { configDigest: d('f'), diffIds: [d('1'), d('2')] }), false);
    assert.equal(sameIdentity(identity, { configDigest: d('c'), diffIds: [d('2'), d('1')] }), false);
    assert.equal(sameIdentity(identity, { configDigest: d('c'), diffIds: [d('1')] }), false);
  });

  it('a spec carries it through its schema, strictly; specs without it still parse; it leaves the digest alone', () => {
    const spec = specFromInspect(inspectSchema.parse(fixture('inspect-running.json')), new Date('2026-01-02T03:04:05.678Z'));
    const withId = { ...spec, imageIdentity: identity };
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(withId))), withId);
    assert.deepEqual(twinSpecSchema.parse(JSON.parse(JSON.stringify(spec))), spec);
    assert.throws(() => twinSpecSchema.parse({ ...withId, imageIdentity: { ...identity, extra: 1 } }), /imageIdentity/);
    assert.throws(() => twinSpecSchema.parse({ ...withId, imageIdentity: { configDigest: 'abc', diffIds: [] } }), /imageIdentity/);
    assert.equal(specDigest(withId), specDigest(spec), 'a twin is not recreated because its spec gained the identity');
  });
});

import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkUpperDirFacts, inspectSchema, layersFromGraphDriver, LayerResolveError, verifyUpperDirOnDisk } from '../../../src/docker/index.js';
import { fixture } from './fixtures.js';

const root = '/var/lib/docker';
const id = 'df921253439266b9e906caa15d6a2caa34d39ee7ff7b87052e87267c37752f21';
const good = {
  LowerDir: `${root}/overlay2/${id}-init/diff:${root}/overlay2/e70695/diff`,
  MergedDir: `${root}/overlay2/${id}/merged`,
  UpperDir: `${root}/overlay2/${id}/diff`,
  WorkDir: `${root}/overlay2/${id}/work`,
};
const ctx = { container: 'web' };

function refusedWith(fn: () => unknown, reason: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LayerResolveError, `expected LayerResolveError, got ${String(err)}`);
    assert.match(err.message, reason);
    assert.match(err.message, /container=web/);
    return true;
  });
}

describe('layersFromGraphDriver', () => {
  it('resolves the dirs of a real inspect', () => {
    const inspect = inspectSchema.parse(fixture('inspect-running.json'));
    const layers = layersFromGraphDriver(inspect.GraphDriver, '/tmp/twl-probe-emdM/data', ctx);
    assert.match(layers.upperDir, /^\/tmp\/twl-probe-emdM\/data\/overlay2\/[0-9a-f]{64}\/diff$/);
    assert.equal(layers.lowerDirs.length, 2);
  });

  it('splits LowerDir and accepts an absent one', () => {
    assert.deepEqual(layersFromGraphDriver({ Name: 'overlay2', Data: good }, root, ctx).lowerDirs, good.LowerDir.split(':'));
    const { LowerDir: _omit, ...noLower } = good;
    assert.deepEqual(layersFromGraphDriver({ Name: 'overlay2', Data: noLower }, root, ctx).lowerDirs, []);
  });

  it('refuses another driver', () => {
    refusedWith(() => layersFromGraphDriver({ Name: 'vfs', Data: good }, root, ctx), /graph driver is "vfs"/);
  });

  it('refuses a missing UpperDir, MergedDir or null Data', () => {
    const { UpperDir: _u, ...noUpper } = good;
    refusedWith(() => layersFromGraphDriver({ Name: 'overlay2', Data: noUpper }, root, ctx), /UpperDir is missing/);
    refusedWith(() => layersFromGraphDriver({ Name: 'overlay2', Data: { ...good, MergedDir: '' } }, root, ctx), /MergedDir is missing/);
    refusedWith(() => layersFromGraphDriver({ Name: 'overlay2', Data: null }, root, ctx), /UpperDir is missing/);
  });

  const outside: Array<[string, string]> = [
    ['outside the data root', '/tmp/elsewhere/diff'],
    ['in a sibling dir with a common prefix', `${root}/overlay2x/${id}/diff`],
    ['in another driver dir of the data root', `${root}/volumes/x/_data`],
    ['the overlay2 dir itself', `${root}/overlay2`],
    ['escaping with ..', `${root}/overlay2/../../../etc`],
    ['relative', `overlay2/${id}/diff`],
    ['with a double slash', `${root}/overlay2//${id}/diff`],
    ['with a trailing slash', `${root}/overlay2/${id}/diff/`],
  ];
  for (const [what, upper] of outside) {
    it(`refuses an UpperDir ${what}`, () => {
      refusedWith(() => layersFromGraphDriver({ Name: 'overlay2', Data: { ...good, UpperDir: upper } }, root, ctx), /UpperDir .* is not a normalized absolute path under/);
    });
  }

  it('refuses a LowerDir entry outside the data root', () => {
    refusedWith(() => layersFromGraphDriver({ Name: 'overlay2', Data: { ...good, LowerDir: `${good.LowerDir}:/etc` } }, root, ctx), /LowerDir entry "\/etc"/);
  });
});

describe('checkUpperDirFacts', () => {
  const upper = good.UpperDir;
  it('accepts a real directory reached without symlinks', () => {
    checkUpperDirFacts(upper, { isSymbolicLink: false, isDirectory: true, realPath: upper }, ctx);
  });
  it('refuses a symlink', () => {
    refusedWith(() => checkUpperDirFacts(upper, { isSymbolicLink: true, isDirectory: false, realPath: '' }, ctx), /is a symlink/);
  });
  it('refuses a non-directory', () => {
    refusedWith(() => checkUpperDirFacts(upper, { isSymbolicLink: false, isDirectory: false, realPath: upper }, ctx), /not a directory/);
  });
  it('refuses a path reached through a symlinked parent', () => {
    refusedWith(() => checkUpperDirFacts(upper, { isSymbolicLink: false, isDirectory: true, realPath: '/srv/elsewhere/diff' }, ctx), /resolves through a symlink to \/srv\/elsewhere\/diff/);
  });
});

describe('verifyUpperDirOnDisk', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twl-layers-'));
    await mkdir(join(dir, 'real/diff'), { recursive: true });
    await mkdir(join(dir, 'target'), { recursive: true });
    await symlink(join(dir, 'real/diff'), join(dir, 'link-diff'));
    await symlink(join(dir, 'real'), join(dir, 'link-parent'));
    await writeFile(join(dir, 'file'), 'x');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a real directory', async () => {
    await verifyUpperDirOnDisk(join(dir, 'real/diff'), ctx);
  });
  it('refuses a symlink to a directory', async () => {
    await assert.rejects(verifyUpperDirOnDisk(join(dir, 'link-diff'), ctx), /is a symlink/);
  });
  it('refuses a directory under a symlinked parent', async () => {
    await assert.rejects(verifyUpperDirOnDisk(join(dir, 'link-parent/diff'), ctx), /resolves through a symlink/);
  });
  it('refuses a file and a missing path', async () => {
    await assert.rejects(verifyUpperDirOnDisk(join(dir, 'file'), ctx), /not a directory/);
    await assert.rejects(verifyUpperDirOnDisk(join(dir, 'absent'), ctx), (err: unknown) => err instanceof LayerResolveError && /cannot be read/.test(err.message));
  });
});

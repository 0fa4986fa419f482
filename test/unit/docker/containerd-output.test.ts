// The containerd image store's outputs as captured from containerd 1.7.24 / dockerd 26.1.5 here (fixtures/), and the
// checks that turn a snapshot's overlay options into layers twinlayer may write into.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import {
  LayerResolveError, layersFromOverlayOptions, overlayFeatureProblem, overlayMounts, overlayOptionsFromCtrMounts, parseCtrVersion,
  parseOverlayOptions, parsePluginsDetailed,
} from '../../../src/docker/index.js';

const text = (name: string): string => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');
const base = '/tmp/twl-cap-ctd-wGHXxH';
const snaps = `${base}/ctd-root/io.containerd.snapshotter.v1.overlayfs`;
const id = '9cc74459e790713b5fd1d0b8ea151d92acde30af895138ce279d07e4e426f1d6';
const off = { redirectDir: false, metacopy: false };
const ctx = { container: 'web' };

function refusedWith(fn: () => unknown, reason: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof LayerResolveError, `expected LayerResolveError, got ${String(err)}`);
    assert.match(err.message, reason);
    assert.match(err.message, /container=web/);
    return true;
  });
}

describe('ctr output', () => {
  it('parseCtrVersion reads the server version and revision (docker info\'s ContainerdCommit.ID)', () => {
    assert.deepEqual(parseCtrVersion(text('ctr-version.txt')), { version: '1.7.24~ds1', revision: '1.7.24~ds1-6+deb13u1' });
    assert.equal(parseCtrVersion('Client:\n  Version:  1.7.24~ds1\n  Revision: x\n'), null, 'no server section');
  });

  it('parsePluginsDetailed finds every snapshotter, its root and why it did not load', () => {
    const plugins = parsePluginsDetailed(text('ctr-plugins-snapshotters.txt'));
    const overlay = plugins.find((p) => p.id === 'overlayfs');
    assert.deepEqual(overlay, { type: 'io.containerd.snapshotter.v1', id: 'overlayfs', root: snaps, error: null });
    const btrfs = plugins.find((p) => p.id === 'btrfs');
    assert.match(btrfs?.error ?? '', /must be a btrfs filesystem/);
    assert.ok(plugins.every((p) => p.type === 'io.containerd.snapshotter.v1'));
    assert.ok(plugins.length >= 6);
  });

  it('parsePluginsDetailed refuses text of another shape', () => {
    assert.throws(() => parsePluginsDetailed('ID: overlayfs\n'), /before any "Type:"/);
    assert.throws(() => parsePluginsDetailed('Type: x\nID: y\nRoot: /z\n'), /unexpected field "Root:"/);
    assert.throws(() => parsePluginsDetailed('Type: x\nID: y\nsomething else\n'), /not a plugin field/);
    assert.throws(() => parsePluginsDetailed('Type: x\n'), /without Type or ID/);
  });

  it('overlayOptionsFromCtrMounts takes the options of the one overlay mount line', () => {
    const options = overlayOptionsFromCtrMounts(text('ctr-snapshots-mounts.txt'), '/x');
    assert.match(options, /^index=off,workdir=.*\/snapshots\/5\/work,upperdir=.*\/snapshots\/5\/fs,lowerdir=/);
    assert.throws(() => overlayOptionsFromCtrMounts(text('ctr-snapshots-mounts.txt'), '/y'), /names \/x, not \/y/);
    assert.throws(() => overlayOptionsFromCtrMounts('mount -t bind /a/fs /x -o rbind,rw\n', '/x'), /mounts as bind/);
    assert.throws(() => overlayOptionsFromCtrMounts('', '/x'), /expected one mount line, got 0/);
    assert.throws(() => overlayOptionsFromCtrMounts('mount -t overlay overlay /x -o a\nmount -t overlay overlay /x -o b\n', '/x'), /got 2/);
    assert.throws(() => overlayOptionsFromCtrMounts('mount overlay on /x\n', '/x'), /not a mount line/);
  });
});

describe('overlay mounts in mountinfo', () => {
  it('finds a running container\'s rootfs mount and its options', () => {
    const mounts = overlayMounts(text('mountinfo-containerd-rootfs.txt'));
    assert.equal(mounts.length, 1);
    assert.equal(mounts[0]?.mountPoint, `${base}/data/rootfs/overlayfs/${id}`);
    const o = parseOverlayOptions(mounts[0]?.superOptions ?? '');
    assert.equal(o.upperdir, `${snaps}/snapshots/3/fs`);
    assert.deepEqual(o.lowerdirs, [`${snaps}/snapshots/2/fs`, `${snaps}/snapshots/1/fs`]);
  });

  it('skips other file systems and unescapes the mount point', () => {
    const mounts = overlayMounts([
      '42 27 254:0 /tmp/x /tmp/x rw,relatime shared:1 - ext4 /dev/vda rw',
      '46 42 0:39 / /tmp/with\\040space rw,relatime shared:2 - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c',
      '47 42 0:39 / /tmp/y rw - overlay overlay rw,lowerdir=/a:/b',
      '',
    ].join('\n'));
    assert.deepEqual(mounts.map((m) => m.mountPoint), ['/tmp/with space', '/tmp/y']);
    assert.throws(() => parseOverlayOptions(mounts[1]?.superOptions ?? ''), /no upperdir/);
  });

  it('parseOverlayOptions unescapes values after splitting and refuses a repeated option', () => {
    const o = parseOverlayOptions('lowerdir=/l,upperdir=/u\\054v,workdir=/w');
    assert.equal(o.upperdir, '/u,v');
    assert.throws(() => parseOverlayOptions('upperdir=/u,upperdir=/v,workdir=/w,lowerdir=/l'), /upperdir given twice/);
  });
});

describe('layersFromOverlayOptions', () => {
  const merged = `${base}/data/rootfs/overlayfs/${id}`;
  const opts = (s: string) => parseOverlayOptions(s);
  const good = `index=off,workdir=${snaps}/snapshots/5/work,upperdir=${snaps}/snapshots/5/fs,lowerdir=${snaps}/snapshots/4/fs:${snaps}/snapshots/1/fs`;

  it('resolves a stopped container\'s snapshot as ctr prints it', () => {
    const layers = layersFromOverlayOptions(opts(overlayOptionsFromCtrMounts(text('ctr-snapshots-mounts.txt'), '/x')), snaps, merged, off, ctx);
    assert.deepEqual(layers, {
      upperDir: `${snaps}/snapshots/5/fs`, workDir: `${snaps}/snapshots/5/work`, mergedDir: merged,
      lowerDirs: [`${snaps}/snapshots/4/fs`, `${snaps}/snapshots/1/fs`],
    });
  });

  it('refuses dirs outside the snapshotter root, not normalized, or not a snapshot\'s fs/work', () => {
    refusedWith(() => layersFromOverlayOptions(opts(good.replace(`upperdir=${snaps}/snapshots/5/fs`, 'upperdir=/etc')), snaps, merged, off, ctx), /upperdir "\/etc" is not/);
    refusedWith(() => layersFromOverlayOptions(opts(good.replace('snapshots/5/fs', 'snapshots/5/../../x/fs')), snaps, merged, off, ctx), /upperdir/);
    refusedWith(() => layersFromOverlayOptions(opts(good.replace('snapshots/5/fs', 'snapshots/5/work')), snaps, merged, off, ctx), /upperdir/);
    refusedWith(() => layersFromOverlayOptions(opts(good), `${base}/other`, merged, off, ctx), /upperdir/);
    refusedWith(() => layersFromOverlayOptions(opts(good.replace('snapshots/5/work', 'snapshots/6/work')), snaps, merged, off, ctx), /workdir .* is not .*snapshots\/5\/work/);
    refusedWith(() => layersFromOverlayOptions(opts(good.replace(`${snaps}/snapshots/4/fs`, '/var/lib/x')), snaps, merged, off, ctx), /a lowerdir entry "\/var\/lib\/x"/);
    refusedWith(() => layersFromOverlayOptions(opts(good.replace('snapshots/4/fs', 'snapshots/5/fs')), snaps, merged, off, ctx), /a lowerdir entry/);
  });

  it('refuses redirect_dir and metacopy, from the options or the kernel\'s defaults', () => {
    refusedWith(() => layersFromOverlayOptions(opts(`${good},redirect_dir=on`), snaps, merged, off, ctx), /redirect_dir is on:/);
    refusedWith(() => layersFromOverlayOptions(opts(`${good},metacopy=on`), snaps, merged, off, ctx), /metacopy is on:/);
    refusedWith(() => layersFromOverlayOptions(opts(good), snaps, merged, { redirectDir: true, metacopy: false }, ctx), /redirect_dir is on \(the kernel's default\)/);
    refusedWith(() => layersFromOverlayOptions(opts(good), snaps, merged, { redirectDir: false, metacopy: true }, ctx), /metacopy is on \(the kernel's default\)/);
    assert.equal(overlayFeatureProblem(new Map([['redirect_dir', 'off'], ['metacopy', 'off']]), { redirectDir: true, metacopy: true }), null, 'explicitly off');
    assert.equal(overlayFeatureProblem(new Map([['redirect_dir', 'follow']]), off), null, 'follow creates no redirect');
  });
});

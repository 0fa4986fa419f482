// The kernel's own checks on xattr values (cap_convert_nscap, posix_acl_valid, xattr_permission), made before staging
// writes anything. The cases follow the kernel's code; hostile.test.ts stages refused and accepted ones through the
// real tools and kernel.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { aclProblem, capabilityProblem, xattrFootprint, xattrProblem } from '../../../src/changeset/xattr-rules.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

function acl(...entries: Array<[tag: number, perm: number, id: number]>): Buffer {
  const b = Buffer.alloc(4 + 8 * entries.length);
  b.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    b.writeUInt16LE(tag, 4 + 8 * i);
    b.writeUInt16LE(perm, 6 + 8 * i);
    b.writeUInt32LE(id, 8 + 8 * i);
  });
  return b;
}
const NONE = 0xffffffff;

describe('capabilityProblem', () => {
  it('accepts v2 (20 bytes) and v3 (24 bytes), with or without the effective flag', () => {
    for (const v of ['0100000200040000000000000000000000000000', '0000000200040000000000000000000000000000', '0100000300040000000000000000000000000000e8030000', '0000000300040000000000000000000000000000' + '00000000']) {
      assert.equal(capabilityProblem(hex(v)), null, v);
    }
  });
  it('refuses other sizes, revisions, flags and the root id -1', () => {
    const bad: Array<[string, RegExp]> = [
      ['01000001000400000000000000', /13 bytes/],
      ['0100000100040000000000000000000000000000', /magic 0x01000001/],
      ['0300000200040000000000000000000000000000', /magic 0x02000003/],
      ['0100000300040000000000000000000000000000', /magic 0x03000001/],
      ['0100000200040000000000000000000000000000' + '00000000', /magic 0x02000001/],
      ['0100000300040000000000000000000000000000ffffffff', /root id/],
      ['', /0 bytes/],
    ];
    for (const [v, why] of bad) assert.match(capabilityProblem(hex(v)) ?? 'accepted', why, v);
  });
});

describe('aclProblem', () => {
  it('accepts minimal and extended ACLs and the empty one (which removes the ACL)', () => {
    assert.equal(aclProblem('a', acl([1, 6, NONE], [4, 4, NONE], [0x20, 4, NONE])), null);
    assert.equal(aclProblem('a', acl([1, 6, NONE], [2, 6, 1000], [4, 4, NONE], [8, 5, 50], [0x10, 7, NONE], [0x20, 0, NONE])), null);
    assert.equal(aclProblem('a', acl()), null);
  });
  it('refuses what posix_acl_valid refuses', () => {
    const bad: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(3), /3 bytes/],
      [Buffer.concat([acl([1, 6, 0]), Buffer.alloc(2)]), /14 bytes/],
      [(() => { const b = acl([1, 6, 0], [4, 4, 0], [0x20, 4, 0]); b.writeUInt32LE(1, 0); return b; })(), /version 1/],
      [acl([1, 6, 0], [2, 6, 1000], [4, 4, 0], [0x20, 4, 0]), /out of order/],
      [acl([4, 4, 0], [1, 6, 0], [0x20, 4, 0]), /out of order/],
      [acl([1, 6, 0], [1, 6, 0], [4, 4, 0], [0x20, 4, 0]), /out of order/],
      [acl([1, 6, 0], [2, 6, NONE], [4, 4, 0], [0x10, 7, 0], [0x20, 4, 0]), /no such user/],
      [acl([1, 8, 0], [4, 4, 0], [0x20, 4, 0]), /permission bits/],
      [acl([1, 6, 0], [4, 4, 0], [0x40, 4, 0]), /unknown tag/],
      [acl([1, 6, 0], [4, 4, 0]), /incomplete/],
    ];
    for (const [v, why] of bad) assert.match(aclProblem('a', v) ?? 'accepted', why, v.toString('hex'));
  });
});

describe('xattrProblem', () => {
  const cap = hex('0100000200040000000000000000000000000000');
  it('accepts what the primary legitimately carries', () => {
    assert.equal(xattrProblem('security.capability', cap, 'file'), null);
    assert.equal(xattrProblem('user.mime_type', Buffer.from('text/plain'), 'file'), null);
    assert.equal(xattrProblem('user.x', Buffer.from('1'), 'dir'), null);
    assert.equal(xattrProblem('trusted.x', Buffer.from('1'), 'symlink'), null);
    assert.equal(xattrProblem('security.selinux', Buffer.from('system_u:object_r:etc_t:s0'), 'symlink'), null);
    assert.equal(xattrProblem('system.posix_acl_default', acl([1, 7, 0], [4, 5, 0], [0x20, 5, 0]), 'dir'), null);
  });
  it('refuses what setxattr(2) would refuse on that kind of entry', () => {
    const bad: Array<[string, Buffer, 'file' | 'dir' | 'symlink' | 'hardlink', RegExp]> = [
      ['user.note', Buffer.from('x'), 'symlink', /only on files and directories/],
      ['system.posix_acl_access', acl([1, 6, 0], [4, 4, 0], [0x20, 4, 0]), 'symlink', /no ACLs on symlinks/],
      ['system.posix_acl_default', acl([1, 6, 0], [4, 4, 0], [0x20, 4, 0]), 'file', /default ACLs are for directories/],
      ['security.capability', cap.subarray(0, 12), 'file', /12 bytes/],
      ['user.big', Buffer.alloc(65537), 'file', /65537 bytes/],
      ['user.x', Buffer.from('1'), 'hardlink', /hard link/],
      ['trusted.overlay.redirect', Buffer.from('/etc'), 'dir', /steers overlayfs/],
      ['system.other', Buffer.from('1'), 'file', /namespace/],
      ['user.', Buffer.from('1'), 'file', /namespace/],
      ['user.' + 'n'.repeat(251), Buffer.from('1'), 'file', /malformed/],
    ];
    for (const [name, v, type, why] of bad) assert.match(xattrProblem(name, v, type) ?? 'accepted', why, `${name} on ${type}`);
  });
  it('xattrFootprint counts a header and the 4-byte-rounded name and value per xattr', () => {
    assert.equal(xattrFootprint([['user.a', 1], ['security.capability', 20]]), 16 + 8 + 4 + 16 + 20 + 20);
  });
});

// Which extended attributes a changeset may set, and on what: the checks the kernel itself makes when they are
// written (setxattr(2), cap_convert_nscap, posix_acl_valid), made before anything is written, so a value the kernel
// would refuse halfway through staging refuses the whole changeset instead. Pure functions.
import { maxNameBytes, maxXattrValueBytes } from './limits.js';
import type { EntryType } from './tar-format.js';

const namespaces = ['user.', 'security.', 'trusted.'];
const aclAccess = 'system.posix_acl_access';
const aclDefault = 'system.posix_acl_default';
const capability = 'security.capability';

// linux/capability.h: vfs_cap_data (revision 2, 20 bytes) and vfs_ns_cap_data (revision 3, 24 bytes, + rootid).
const VFS_CAP_REVISION_2 = 0x0200_0000;
const VFS_CAP_REVISION_3 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE = 0x0000_0001;
const XATTR_CAPS_SZ_2 = 20;
const XATTR_CAPS_SZ_3 = 24;

// linux/posix_acl_xattr.h and posix_acl.h.
const POSIX_ACL_XATTR_VERSION = 0x0002;
const ACL_USER_OBJ = 0x01;
const ACL_USER = 0x02;
const ACL_GROUP_OBJ = 0x04;
const ACL_GROUP = 0x08;
const ACL_MASK = 0x10;
const ACL_OTHER = 0x20;
const ACL_PERMS = 0x07;
const NO_ID = 0xffff_ffff;

/** Why the kernel refuses `value` as a file capability, or null: the structure cap_convert_nscap checks. */
export function capabilityProblem(value: Buffer): string | null {
  if (value.length !== XATTR_CAPS_SZ_2 && value.length !== XATTR_CAPS_SZ_3) {
    return `${capability} of ${value.length} bytes (a v2 value has ${XATTR_CAPS_SZ_2}, a v3 value ${XATTR_CAPS_SZ_3})`;
  }
  const magic = value.readUInt32LE(0);
  const revision = magic & ~VFS_CAP_FLAGS_EFFECTIVE;
  const expected = value.length === XATTR_CAPS_SZ_2 ? VFS_CAP_REVISION_2 : VFS_CAP_REVISION_3;
  if (revision !== expected) {
    return `${capability} of ${value.length} bytes with magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x${expected.toString(16).padStart(8, '0')}, optionally with the effective flag 0x1)`;
  }
  if (value.length === XATTR_CAPS_SZ_3 && value.readUInt32LE(20) === NO_ID) return `${capability} v3 with root id 4294967295 (no such uid)`;
  return null;
}

/** Why the kernel refuses `value` as a POSIX ACL, or null: posix_acl_from_xattr and posix_acl_valid. */
export function aclProblem(name: string, value: Buffer): string | null {
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return `${name} of ${value.length} bytes (a 4-byte header and 8 bytes per entry)`;
  if (value.readUInt32LE(0) !== POSIX_ACL_XATTR_VERSION) return `${name} of version ${value.readUInt32LE(0)} (expected ${POSIX_ACL_XATTR_VERSION})`;
  // The kernel's state machine: USER_OBJ, USER*, GROUP_OBJ, GROUP*, [MASK], OTHER, in this order, each once; a mask
  // is required as soon as there is a named user or group.
  let state = ACL_USER_OBJ;
  let needsMask = false;
  for (let off = 4; off < value.length; off += 8) {
    const tag = value.readUInt16LE(off);
    const perm = value.readUInt16LE(off + 2);
    const id = value.readUInt32LE(off + 4);
    if ((perm & ~ACL_PERMS) !== 0) return `${name}: entry ${(off - 4) / 8} has permission bits 0x${perm.toString(16)}`;
    const bad = `${name}: entry ${(off - 4) / 8} (tag 0x${tag.toString(16)}) out of order or repeated`;
    switch (tag) {
      case ACL_USER_OBJ:
        if (state !== ACL_USER_OBJ) return bad;
        state = ACL_USER;
        break;
      case ACL_USER:
      case ACL_GROUP:
        if (state !== (tag === ACL_USER ? ACL_USER : ACL_GROUP)) return bad;
        if (id === NO_ID) return `${name}: entry ${(off - 4) / 8} names id 4294967295 (no such ${tag === ACL_USER ? 'user' : 'group'})`;
        needsMask = true;
        break;
      case ACL_GROUP_OBJ:
        if (state !== ACL_USER) return bad;
        state = ACL_GROUP;
        break;
      case ACL_MASK:
        if (state !== ACL_GROUP) return bad;
        state = ACL_OTHER;
        break;
      case ACL_OTHER:
        if (!(state === ACL_OTHER || (state === ACL_GROUP && !needsMask))) return bad;
        state = 0;
        break;
      default:
        return `${name}: entry ${(off - 4) / 8} has an unknown tag 0x${tag.toString(16)}`;
    }
  }
  // No entry at all removes the ACL, which the kernel accepts.
  if (value.length > 4 && state !== 0) return `${name} is incomplete (it needs user, group and other entries, and a mask with named ones)`;
  return null;
}

/** Why `name` = `value` cannot be set on an entry of `type`, or null. Hard links carry no xattrs of their own (they
 *  share their target's inode), so the type is that of the entry that creates the inode. */
export function xattrProblem(name: string, value: Buffer, type: EntryType): string | null {
  if (name.startsWith('trusted.overlay.')) return `xattr ${name} steers overlayfs and is never set from a changeset`;
  if (name.includes('\0') || Buffer.byteLength(name) > maxNameBytes) return 'malformed xattr name';
  if (value.length > maxXattrValueBytes) return `xattr ${name} value of ${value.length} bytes (the kernel accepts ${maxXattrValueBytes} at most)`;
  if (type === 'hardlink') return `xattr ${name} on a hard link (it belongs to the link's target)`;
  if (name === aclAccess || name === aclDefault) {
    if (type === 'symlink') return `${name} on a symlink (Linux has no ACLs on symlinks)`;
    if (name === aclDefault && type !== 'dir' && value.length > 4) return `${name} on a ${type} (default ACLs are for directories)`;
    return aclProblem(name, value);
  }
  const ns = namespaces.find((p) => name.startsWith(p));
  if (ns === undefined || name.length === ns.length) return `xattr namespace of ${JSON.stringify(name)} not allowed`;
  // xattr_permission(): user.* only on regular files and directories.
  if (ns === 'user.' && type !== 'file' && type !== 'dir') return `xattr ${name} on a ${type} (Linux allows user.* only on files and directories)`;
  if (name === capability) return capabilityProblem(value);
  return null;
}

/** What an inode's xattrs take on disk, conservatively (ext4: a 16-byte entry header, name without its namespace
 *  prefix and value each rounded up to 4 bytes). Used to pick the entry to probe, and to compare with the probe. */
export function xattrFootprint(layout: ReadonlyArray<readonly [name: string, valueBytes: number]>): number {
  let total = 0;
  for (const [name, valueBytes] of layout) total += 16 + roundUp4(Buffer.byteLength(name)) + roundUp4(valueBytes);
  return total;
}

function roundUp4(n: number): number {
  return (n + 3) & ~3;
}

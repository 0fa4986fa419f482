// The writes of the chaos soak: the operations of the core end-to-end test (test/e2e/push-pull.test.ts) as small
// shell scripts run with `docker exec` inside a protected container — create, overwrite, append, truncate,
// chmod, chown, rename, delete, mkdir/rmdir, a recreated directory (opaque), symlinks, hard links, user xattrs,
// edits and deletions of image files. Paths come from a small set so that operations meet: a rename over an
// existing file, a hard link to a file renamed later, a directory removed with links inside.

import type { Prng } from './prng.js';

export const OPS = [
  'create', 'overwrite', 'append', 'truncate', 'chmod', 'chown', 'rename', 'delete', 'mkdir', 'rmdir', 'recreate-dir',
  'symlink', 'hardlink', 'xattr', 'image-edit', 'image-delete', 'burst',
] as const;
export type Op = (typeof OPS)[number];

const WEIGHTS: Record<Op, number> = {
  create: 10, overwrite: 10, append: 10, truncate: 2, chmod: 5, chown: 4, rename: 6, delete: 6, mkdir: 3, rmdir: 2,
  'recreate-dir': 2, symlink: 4, hardlink: 4, xattr: 4, 'image-edit': 3, 'image-delete': 1, burst: 3,
};

const MODES = ['600', '644', '640', '755', '700', '4755', '2750', '1777'];
const IMAGE_FILES = ['/etc/app/a.conf', '/etc/app/b.conf', '/srv/data/one.txt', '/srv/data/sub/two.txt', '/srv/data/sub/deep/three.txt', '/var/www/index.html'];

function dir(prng: Prng): string {
  return `/data/d${prng.int(0, 3)}${prng.next() < 0.3 ? `/s${prng.int(0, 1)}` : ''}`;
}

function file(prng: Prng): string {
  return `${dir(prng)}/f${prng.int(0, 7)}`;
}

/** Content of `bytes` bytes from the container's /dev/urandom, or a short line. */
function content(prng: Prng, path: string, op: '>' | '>>'): string {
  const r = prng.next();
  if (r < 0.5) return `echo ${prng.hex(8)} ${op} ${path}`;
  const bytes = r < 0.97 ? prng.int(1, 65_536) : prng.int(256 * 1024, 2 * 1024 * 1024);
  return `head -c ${bytes} /dev/urandom ${op} ${path}`;
}

/** One operation as a shell script; failures inside (a missing file) are part of the mix, never fatal. `then` runs
 *  after it and gives the script's exit status (the soak's marker, markers.ts). */
export function drawOp(prng: Prng, then = 'exit 0'): { op: Op; script: string } {
  const op = prng.weighted(WEIGHTS);
  const f = file(prng);
  const parent = `mkdir -p ${f.slice(0, f.lastIndexOf('/'))}`;
  let s: string;
  switch (op) {
    case 'create':
      s = `${parent} && ${content(prng, f, '>')}`;
      break;
    case 'overwrite':
      s = `[ -f ${f} ] && ${content(prng, f, '>')}`;
      break;
    case 'append':
      s = `${parent} && ${content(prng, f, '>>')}`;
      break;
    case 'truncate':
      s = `[ -f ${f} ] && : > ${f}`;
      break;
    case 'chmod':
      s = `chmod ${prng.pick(MODES)} ${prng.next() < 0.8 ? f : dir(prng)}`;
      break;
    case 'chown':
      s = `chown ${prng.int(0, 3000)}:${prng.int(0, 3000)} ${prng.next() < 0.8 ? f : dir(prng)}`;
      break;
    case 'rename': {
      const to = file(prng);
      s = `mkdir -p ${to.slice(0, to.lastIndexOf('/'))} && mv -f ${prng.next() < 0.85 ? f : dir(prng)} ${to}`;
      break;
    }
    case 'delete':
      s = `rm -f ${f}`;
      break;
    case 'mkdir':
      s = `mkdir -p ${dir(prng)}/m${prng.int(0, 2)}`;
      break;
    case 'rmdir':
      s = prng.next() < 0.5 ? `rmdir ${dir(prng)}/m${prng.int(0, 2)}` : `rm -rf ${dir(prng)}`;
      break;
    case 'recreate-dir': {
      const d = dir(prng);
      s = `rm -rf ${d} && mkdir -p ${d} && echo ${prng.hex(4)} > ${d}/f${prng.int(0, 7)}`;
      break;
    }
    case 'symlink':
      s = `${parent} && ln -sfn ${prng.next() < 0.7 ? file(prng) : `../f${prng.int(0, 7)}`} ${f.replace(/f(\d)$/, 'l$1')}`;
      break;
    case 'hardlink':
      s = `[ -f ${f} ] && ${parent} && ln -f ${f} ${file(prng).replace(/f(\d)$/, 'h$1')}`;
      break;
    case 'xattr':
      s = prng.next() < 0.8 ? `setfattr -n user.k${prng.int(0, 2)} -v ${prng.hex(prng.int(1, 40))} ${f}` : `setfattr -x user.k${prng.int(0, 2)} ${f}`;
      break;
    case 'image-edit':
      s = `${content(prng, prng.pick(IMAGE_FILES), prng.next() < 0.5 ? '>' : '>>')}`;
      break;
    case 'image-delete':
      s = prng.next() < 0.7 ? `rm -f ${prng.pick(IMAGE_FILES)}` : `rm -rf /srv/data && mkdir -p /srv/data/sub && echo ${prng.hex(4)} > /srv/data/sub/two.txt`;
      break;
    case 'burst': {
      // Several changes inside one debounce window, some undone right away.
      const n = prng.int(3, 12);
      const parts: string[] = [];
      for (let i = 0; i < n; i++) {
        const g = file(prng);
        parts.push(`mkdir -p ${g.slice(0, g.lastIndexOf('/'))}`, prng.next() < 0.7 ? content(prng, g, '>') : `rm -f ${g}`);
      }
      s = parts.join('; ');
      break;
    }
  }
  return { op, script: `{ ${s}; } >/dev/null 2>&1; ${then}` };
}

// Reads a `docker export` tar stream into a comparable tree: path -> type, mode, owner, size, content hash,
// link target. Hard links are resolved to their target's content so walk order does not matter.
import { createHash } from 'node:crypto';
import { Parser, type ReadEntry } from 'tar';

export interface TreeNode { type: string; mode: number; uid: number; gid: number; size: number; sha256?: string; linkpath?: string; mtime?: number }
export type Tree = Map<string, TreeNode>;

/** Files Docker manages itself in every container; never compared (DESIGN.md "Correctness oracle"). */
export const dockerManaged = new Set(['etc/hosts', 'etc/hostname', 'etc/resolv.conf', '.dockerenv']);

export async function readExport(stream: NodeJS.ReadableStream, opts: { mtimes?: boolean } = {}): Promise<Tree> {
  const tree: Tree = new Map();
  const parser = new Parser({ strict: true });
  const pending: Array<Promise<void>> = [];
  parser.on('entry', (entry: ReadEntry) => {
    const path = entry.path.replace(/^\.?\//, '').replace(/\/$/, '');
    const node: TreeNode = { type: entry.type, mode: (entry.mode ?? 0) & 0o7777, uid: entry.uid ?? 0, gid: entry.gid ?? 0, size: entry.size ?? 0 };
    if (opts.mtimes && entry.type === 'File' && entry.mtime) node.mtime = Math.floor(entry.mtime.getTime() / 1000);
    if (entry.type === 'SymbolicLink') node.linkpath = entry.linkpath ?? '';
    if (entry.type === 'Link') {
      const target = tree.get((entry.linkpath ?? '').replace(/^\.?\//, ''));
      node.type = 'File';
      if (target?.sha256) node.sha256 = target.sha256;
      node.size = target?.size ?? 0;
      node.mode = target?.mode ?? node.mode;
    }
    if (entry.type === 'File') {
      const hash = createHash('sha256');
      entry.on('data', (c: Buffer) => hash.update(c));
      pending.push(new Promise((resolve) => entry.on('end', () => {
        node.sha256 = hash.digest('hex');
        resolve();
      })));
    } else {
      entry.resume();
    }
    if (path !== '' && !dockerManaged.has(path)) tree.set(path, node);
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    stream.on('error', reject);
    stream.pipe(parser);
  });
  await Promise.all(pending);
  return tree;
}

/** Human-readable differences between two trees (empty when equal). */
export function diffTrees(a: Tree, b: Tree, labels: [string, string] = ['primary', 'twin']): string[] {
  const out: string[] = [];
  for (const [path, na] of a) {
    const nb = b.get(path);
    if (!nb) out.push(`only in ${labels[0]}: ${path} (${na.type})`);
    else if (JSON.stringify(na) !== JSON.stringify(nb)) out.push(`differs: ${path}\n  ${labels[0]}: ${JSON.stringify(na)}\n  ${labels[1]}: ${JSON.stringify(nb)}`);
  }
  for (const path of b.keys()) if (!a.has(path)) out.push(`only in ${labels[1]}: ${path} (${b.get(path)?.type})`);
  return out;
}

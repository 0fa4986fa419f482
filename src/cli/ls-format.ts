// What `twinlayer ls` shows, and how it reads on a terminal (pure; --json prints the same objects). Every text from
// the bucket goes through printable() on its way out (terminal-text.ts).
import { printable } from './terminal-text.js';

export interface GenerationView {
  generation: number;
  /** The claimer, else the head's writer (a generation `twinlayer push` opened has no claim). */
  owner: string | null;
  claimedAt: string | null;
  from: { generation: number; containers: Record<string, number> } | null;
  head: { seq: number; updatedAt: string; containers: Record<string, number> } | null;
  release: { host: string; releasedAt: string; reason: string } | null;
  /** Refused or missing objects (not signed by a trusted key, unreadable). */
  problems: string[];
}

export interface TailView {
  key: string;
  host?: string;
  generation?: number;
  claimGeneration?: number;
  container?: string;
  fromSeq?: number;
  lastShippedSeq?: number;
  digest?: string;
  size?: number;
  files?: number;
  deletions?: number;
  savedAt?: string;
  reason?: string;
  /** Set when the tail's record was refused or unreadable. */
  error?: string;
}

/** Items a bounded listing left out: how many, and whether there are at least that many (the listing of keys stopped
 *  at its own bound first). */
export interface LeftOut {
  count: number;
  atLeast: boolean;
}

export interface Overview {
  bucket: string;
  /** Newest first. */
  generations: GenerationView[];
  /** The newest generation the group made, whose head lists the containers. */
  newest: number | null;
  containers: Record<string, number>;
  /** Containers with a twin spec in the bucket. */
  specs: string[];
  /** Set when the spec listing stopped at its bound. */
  specsLeftOut: LeftOut | null;
  tails: TailView[];
  tailsLeftOut: LeftOut | null;
}

export interface CommitView {
  seq: number;
  parentSeq: number;
  kind: 'delta' | 'full';
  publishedAt: string;
  firstWriteAt: string;
  /** Bytes of the changeset blob. */
  size: number;
  files: number;
  deletions: number;
  /** Bytes of the files the changeset carries (chunked files included). */
  bytes: number;
  chunkedFiles: number;
  writer: string;
  digest: string;
}

export interface ContainerListing {
  bucket: string;
  container: string;
  /** Per generation: the commits found by following the container's parentSeq links down from its head (at most a
   *  bound of them: `truncated`), and those published past the head; `unreadable`: records refused or missing on
   *  the way (a broken link ends the walk) or past the head. */
  generations: Array<GenerationView & { commits: CommitView[]; unreadable: string[]; truncated: boolean }>;
  tails: TailView[];
  tailsLeftOut: LeftOut | null;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

/** Left-aligned columns, two spaces apart; every cell escaped for the terminal. */
export function table(header: string[], rawRows: string[][]): string {
  const rows = rawRows.map((r) => r.map(printable));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function generationNote(v: GenerationView, newest: number | null): string {
  const notes: string[] = [];
  if (v.generation === newest) notes.push('newest');
  if (v.claimedAt === null && v.head !== null) notes.push('opened without a claim');
  if (v.from !== null && v.from.generation > 0) notes.push(`promoted from generation ${v.from.generation}`);
  if (v.release !== null) notes.push(`released by ${v.release.host} at ${v.release.releasedAt} (${v.release.reason})`);
  notes.push(...v.problems);
  return notes.join('; ');
}

/** The line under a listing that stopped at its bound. */
export function leftOutLine(l: LeftOut | null): string {
  return l === null ? '' : `… and ${l.atLeast ? 'at least ' : ''}${l.count} more (the listing stops at its bound)\n`;
}

function formatTails(tails: TailView[], leftOut: LeftOut | null): string {
  if (tails.length === 0 && leftOut === null) return 'divergent tails: none\n';
  const rows = tails.map((t) => (t.error !== undefined
    ? [t.key, '', '', '', '', '', `refused: ${t.error}`]
    : [t.container ?? '', t.host ?? '', String(t.generation ?? ''), `${t.fromSeq ?? ''}..${t.lastShippedSeq ?? ''}`, `${t.files ?? 0} files, ${t.deletions ?? 0} deleted, ${formatBytes(t.size ?? 0)}`, t.savedAt ?? '', t.reason ?? '']));
  return `divergent tails (saved, never applied; blobs/sha256/<digest>, see --json):\n${table(['CONTAINER', 'HOST', 'GEN', 'AFTER..LAST', 'CONTENT', 'SAVED', 'WHY'], rows)}${leftOutLine(leftOut)}`;
}

export function formatOverview(o: Overview): string {
  let out = `${printable(o.bucket)}: ${o.generations.length} generation(s)\n`;
  if (o.generations.length > 0) {
    out += table(['GEN', 'OWNER', 'CLAIMED', 'HEAD SEQ', 'UPDATED', 'CONTAINERS', 'NOTE'], o.generations.map((v) => [
      String(v.generation), v.owner ?? '-', v.claimedAt ?? '-', v.head === null ? '-' : String(v.head.seq), v.head?.updatedAt ?? '-',
      v.head === null ? '-' : String(Object.keys(v.head.containers).length), generationNote(v, o.newest),
    ]));
  }
  const names = [...new Set([...Object.keys(o.containers), ...o.specs])].sort();
  if (names.length > 0) {
    out += `\ncontainers${o.newest === null ? '' : ` (last seq in generation ${o.newest})`}:\n`;
    out += table(['CONTAINER', 'LAST SEQ', 'SPEC'], names.map((n) => [n, o.containers[n] === undefined ? '-' : String(o.containers[n]), o.specs.includes(n) ? 'yes' : o.specsLeftOut === null ? 'no' : '?']));
  }
  if (o.specsLeftOut !== null) out += `specs: ${leftOutLine(o.specsLeftOut)}`;
  return `${out}\n${formatTails(o.tails, o.tailsLeftOut)}`;
}

export function formatContainerListing(l: ContainerListing): string {
  let out = '';
  if (l.generations.length === 0) out += `${printable(l.bucket)}: no generation has commits of ${printable(l.container)}\n`;
  for (const g of l.generations) {
    out += `${printable(l.container)} in generation ${g.generation} (${printable(g.owner ?? 'no owner')}${g.head === null ? '' : `, head seq ${g.head.seq}`}): ${g.commits.length} commit(s)${g.truncated ? ', listing stopped at its bound' : ''}\n`;
    if (g.commits.length > 0) {
      out += table(['SEQ', 'KIND', 'PUBLISHED', 'SIZE', 'FILES', 'DELETED', 'CHUNKED', 'WRITER'], g.commits.map((c) => [
        String(c.seq), c.kind, c.publishedAt, formatBytes(c.size), String(c.files), String(c.deletions), String(c.chunkedFiles), c.writer,
      ]));
    }
    for (const u of g.unreadable) out += `  unreadable record: ${printable(u)}\n`;
    for (const p of g.problems) out += `  ${printable(p)}\n`;
    out += '\n';
  }
  return out + formatTails(l.tails, l.tailsLeftOut);
}

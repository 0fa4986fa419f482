// One page of an S3 ListObjects answer (ListBucketResult), read by a small strict XML reader instead of the AWS SDK's
// parser: the standby lists its specs every 20 head polls, and the SDK's middleware and XML parsing of a 200-key page
// cost ~45 ms of CPU a minute idle. Only what S3 sends is accepted — elements, attributes, text with the five named
// and numeric character references; no comments, CDATA, DOCTYPE or processing instructions past the XML declaration —
// and the page must make sense for the request: every key under the prefix and after the marker in S3's order (UTF-8
// bytes), so a server that repeats a page cannot loop the listing. The keys of a page need not be in order among
// themselves: the embedded S3 server walks its directories and sends `web/spec.json` before `web-db/spec.json`, and
// the SDK read such pages too. Anything else is refused, with the prefix named. A key with a control character comes
// as a character reference (`&#x1;`) and is read as the SDK read it: the key layout, not the XML, passes it over.
import { z } from 'zod';

import { StoreRequestError } from './errors.js';
import type { ListedObject } from './blob-store.js';

export interface ListPage {
  objects: ListedObject[];
  isTruncated: boolean;
}

interface XmlElement {
  name: string;
  children: XmlElement[];
  text: string;
}

/** S3 nests Owner > ID under Contents under ListBucketResult; nothing in a listing goes deeper than this. */
const MAX_DEPTH = 8;

const NAMED_REFS: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

class Malformed extends Error {}

function decodeText(raw: string): string {
  return raw.replace(/&([^;]{0,10});|&/g, (whole, ref: string | undefined) => {
    if (ref === undefined) throw new Malformed('a bare & in text');
    const named = NAMED_REFS[ref];
    if (named !== undefined) return named;
    const m = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(ref);
    const code = m === null ? Number.NaN : m[1] !== undefined ? Number.parseInt(m[1], 16) : Number(m[2]);
    // Any code point but NUL and the surrogates: S3 writes a key's control characters as references (XML 1.1's
    // way), and a hostile key refused here would stop the whole listing, not just be passed over by the key layout.
    const allowed = code >= 0x1 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff);
    if (!allowed) throw new Malformed(`an unknown character reference ${JSON.stringify(whole)}`);
    return String.fromCodePoint(code);
  });
}

const DECLARATION = /^\uFEFF?<\?xml(?:\s+[a-z]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*\s*\?>/;
const ATTRIBUTES = /^(?:\s+[A-Za-z_][\w.:-]*\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*\s*$/;

/** XML names as S3 writes them: a letter or _, then letters, digits, _ . : - (checked by hand: a regex per tag was
 *  most of a 200-key page's reading time). */
function isName(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
    if (!letter && (i === from || !((c >= 48 && c <= 57) || c === 46 || c === 58 || c === 45))) return false;
  }
  return true;
}

const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

/** The document's root element. Mixed content (text beside child elements) must be whitespace. */
export function readXml(xml: string): XmlElement {
  let i = DECLARATION.exec(xml)?.[0].length ?? 0;
  const stack: XmlElement[] = [];
  let top: XmlElement | undefined;
  let root: XmlElement | null = null;
  const len = xml.length;
  while (i < len) {
    const lt = xml.indexOf('<', i);
    if (lt !== i) {
      const end = lt < 0 ? len : lt;
      const text = xml.slice(i, end);
      i = end;
      if (top === undefined) {
        if (text.trim() !== '') throw new Malformed('text outside the root element');
      } else {
        top.text += text.includes('&') ? decodeText(text) : text;
      }
      continue;
    }
    // A tag: <name attr="v">, </name> or <name/>. An attribute value holding '>' ends the tag early and is refused.
    const gt = xml.indexOf('>', i);
    if (gt < 0) throw new Malformed(`an unterminated tag at offset ${i}`);
    const close = xml.charCodeAt(i + 1) === 47;
    const selfClose = !close && xml.charCodeAt(gt - 1) === 47;
    const from = close ? i + 2 : i + 1;
    const innerEnd = selfClose ? gt - 1 : gt;
    let nameEnd = from;
    while (nameEnd < innerEnd && !isSpace(xml.charCodeAt(nameEnd))) nameEnd++;
    const rest = nameEnd < innerEnd ? xml.slice(nameEnd, innerEnd) : '';
    if (!isName(xml, from, nameEnd) || (rest !== '' && (close ? rest.trim() !== '' : !ATTRIBUTES.test(rest)))) {
      throw new Malformed(`no tag at offset ${i}: ${JSON.stringify(xml.slice(i, Math.min(gt + 1, i + 40)))}`);
    }
    const name = xml.slice(from, nameEnd);
    i = gt + 1;
    if (close) {
      const open = stack.pop();
      top = stack[stack.length - 1];
      if (open?.name !== name) throw new Malformed(`</${name}> closes ${open === undefined ? 'nothing' : `<${open.name}>`}`);
      if (open.children.length > 0 && open.text.trim() !== '') throw new Malformed(`<${name}> mixes text and elements`);
      continue;
    }
    if (root !== null && top === undefined) throw new Malformed(`a second root element <${name}>`);
    const el: XmlElement = { name, children: [], text: '' };
    if (top === undefined) root = el;
    else top.children.push(el);
    if (selfClose) continue;
    if (stack.length >= MAX_DEPTH) throw new Malformed(`elements nested deeper than ${MAX_DEPTH}`);
    stack.push(el);
    top = el;
  }
  if (top !== undefined) throw new Malformed(`the answer ends inside <${top.name}>`);
  if (root === null) throw new Malformed('no root element');
  return root;
}

/** The text of the only child `name` of `el`; undefined when it has none; two are refused. */
function only(el: XmlElement, name: string): string | undefined {
  let found: XmlElement | undefined;
  for (const c of el.children) {
    if (c.name !== name) continue;
    if (found !== undefined) throw new Malformed(`<${el.name}> has two <${name}>`);
    found = c;
  }
  if (found !== undefined && found.children.length > 0) throw new Malformed(`<${name}> holds elements`);
  return found?.text;
}

const pageShape = z.object({
  isTruncated: z.enum(['true', 'false']),
  contents: z.array(z.object({
    // S3 keys are at most 1024 bytes of UTF-8.
    key: z.string().min(1).refine((k) => Buffer.byteLength(k) <= 1024, 'a key longer than 1024 bytes'),
    size: z.string().regex(/^\d{1,16}$/, 'a size that is not a decimal integer').transform(Number).refine(Number.isSafeInteger, 'a size past 2^53').optional(),
    lastModified: z.string().transform((s) => Date.parse(s)).refine(Number.isFinite, 'a LastModified that is not a date').optional(),
  })),
});

function shapeOf(root: XmlElement): unknown {
  if (root.name !== 'ListBucketResult') throw new Malformed(`the root element is <${root.name}>, not <ListBucketResult>`);
  return {
    isTruncated: only(root, 'IsTruncated'),
    contents: root.children.filter((c) => c.name === 'Contents').map((c) => {
      const size = only(c, 'Size');
      const lastModified = only(c, 'LastModified');
      return { key: only(c, 'Key'), ...(size === undefined ? {} : { size }), ...(lastModified === undefined ? {} : { lastModified }) };
    }),
  };
}

/**
 * The page `xml` answers to a listing of `prefix` after `marker`. `now` stands for a LastModified the server left out
 * (GC then takes the object as just written: it keeps it for its grace period). Throws StoreRequestError naming the
 * prefix when the answer is not such a page.
 */
export function parseListPage(xml: string, prefix: string, marker: string | undefined, now: number, where: { endpoint: string; bucket: string }): ListPage {
  try {
    const parsed = pageShape.safeParse(shapeOf(readXml(xml)));
    if (!parsed.success) throw new Malformed(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    const objects: ListedObject[] = [];
    const after = marker === undefined ? null : Buffer.from(marker);
    for (const c of parsed.data.contents) {
      if (!c.key.startsWith(prefix)) throw new Malformed(`key ${JSON.stringify(c.key)} is not under the prefix`);
      if (after !== null && Buffer.compare(Buffer.from(c.key), after) <= 0) throw new Malformed(`key ${JSON.stringify(c.key)} does not sort after the marker ${JSON.stringify(marker)}`);
      objects.push({ key: c.key, size: c.size ?? 0, lastModified: c.lastModified ?? now });
    }
    const isTruncated = parsed.data.isTruncated === 'true';
    // The next page starts after this one's last key: a truncated page without one would ask for itself again.
    if (isTruncated && objects.length === 0) throw new Malformed('a truncated page without keys');
    return { objects, isTruncated };
  } catch (err) {
    if (!(err instanceof Malformed)) throw err;
    throw new StoreRequestError(`the S3 server's listing of prefix ${JSON.stringify(prefix)} is malformed: ${err.message}`, { ...where, prefix, ...(marker === undefined ? {} : { marker }) });
  }
}

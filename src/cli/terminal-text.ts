// Text from the bucket on its way to an operator's terminal. Names, keys and refusal reasons come from objects anyone
// who can write the bucket may have placed (a JSON parse error quotes the bytes it choked on): a control character
// or an ANSI escape sequence printed raw could move the cursor, rewrite lines already shown or retitle the window.
// Every such character is shown escaped instead. Pure.

/** C0 and C1 controls, DEL, and the format characters that reorder or hide text (bidi overrides and isolates, zero
 *  width joiners and marks, line and paragraph separators, the BOM). */
const unsafe = /[\p{Cc}\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/gu;

function escapeChar(c: string): string {
  const code = c.codePointAt(0)!;
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
}

/** `s` with every control or hiding character written as an escape (`\x1b`, `\n`, `\u{202e}`); a backslash is
 *  doubled, so what is shown reads back unambiguously. */
export function printable(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(unsafe, escapeChar);
}

/** What JSON.stringify leaves raw inside strings: DEL, the C1 controls (U+009B is a CSI on some terminals) and the
 *  format characters (C0 controls it escapes itself; the newlines of its indentation are its own). */
const unsafeInJson = /[\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/gu;

/** JSON for a terminal: what JSON.stringify leaves raw is written as \uXXXX escapes, which JSON reads back as the
 *  same string (such characters occur only inside strings). */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(unsafeInJson, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

// printable() and terminalJson(): no control character or text-reordering format character from the bucket reaches
// the terminal raw, and what is shown reads back unambiguously.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { printable, terminalJson } from '../../../src/cli/terminal-text.js';
import { leftOutLine, table } from '../../../src/cli/ls-format.js';

/** Every character a terminal acts on or that hides or reorders text. */
const raw = /[\p{Cc}\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/u;

describe('printable', () => {
  it('leaves ordinary names alone, non-ASCII letters included', () => {
    for (const s of ['web', 'b.c-1', 'host-a', 'ü-名前', 'a b']) assert.equal(printable(s), s);
  });

  it('escapes C0 and C1 controls, DEL, ESC sequences and bidi overrides', () => {
    assert.equal(printable('\x1b[2Jclear'), '\\x1b[2Jclear');
    assert.equal(printable('title\x1b]0;pwned\x07'), 'title\\x1b]0;pwned\\x07');
    assert.equal(printable('a\nb\rc\td'), 'a\\nb\\rc\\td');
    assert.equal(printable('\x00\x7f\u0085\u009b31m'), '\\x00\\x7f\\x85\\x9b31m');
    assert.equal(printable('\u202eevil\u2066x\u2069'), '\\u{202e}evil\\u{2066}x\\u{2069}');
    assert.equal(printable('zero\u200bwidth\ufeff'), 'zero\\u{200b}width\\u{feff}');
    assert.equal(printable('line\u2028sep'), 'line\\u{2028}sep');
  });

  it('doubles a backslash, so an escape shown cannot be faked by the text itself', () => {
    assert.equal(printable('\\x1b'), '\\\\x1b');
    assert.notEqual(printable('\\x1b'), printable('\x1b'));
  });

  it('leaves nothing raw whatever the input (every code point below U+10000 once)', () => {
    let all = '';
    for (let c = 0; c < 0x10000; c++) if (c < 0xd800 || c > 0xdfff) all += String.fromCodePoint(c);
    assert.doesNotMatch(printable(all), raw);
  });
});

describe('terminalJson', () => {
  it('escapes what JSON.stringify leaves raw and reads back as the same value', () => {
    const value = { name: 'a\u009b31m\u202e\x1b[0m', list: ['\u2028', 'ok'] };
    const text = terminalJson(value);
    // Its own indentation is the only raw control left.
    assert.doesNotMatch(text.replace(/\n/g, ''), raw);
    assert.deepEqual(JSON.parse(text), value);
  });
});

describe('ls tables', () => {
  it('escape every cell before the columns are measured', () => {
    const out = table(['CONTAINER', 'WHY'], [['web', 'refused: \x1b[2J\u202e']]);
    assert.doesNotMatch(out.replace(/\n/g, ''), raw);
    assert.match(out, /^web +refused: \\x1b\[2J\\u\{202e\}$/m);
  });

  it('say how many items a bounded listing left out', () => {
    assert.equal(leftOutLine(null), '');
    assert.equal(leftOutLine({ count: 3, atLeast: false }), '… and 3 more (the listing stops at its bound)\n');
    assert.equal(leftOutLine({ count: 7, atLeast: true }), '… and at least 7 more (the listing stops at its bound)\n');
  });
});

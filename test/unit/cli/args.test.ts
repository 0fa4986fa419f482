import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from '../../../src/cli/args.js';

const allowed = new Set(['config', 'json', 'generation']);
const switches = new Set(['json']);

describe('parseArgs', () => {
  it('takes the command, then operands and flags in any order; a switch never takes the next word', () => {
    const { command, operands, flags } = parseArgs(['ls', '--json', 'web', '--generation', '3', '--config=/etc/t.yaml'], allowed, switches);
    assert.equal(command, 'ls');
    assert.deepEqual(operands, ['web']);
    assert.deepEqual([...flags], [['json', 'true'], ['generation', '3'], ['config', '/etc/t.yaml']]);
  });
  it('a flag that is not a switch takes the next word as its value, or true at the end', () => {
    assert.deepEqual([...parseArgs(['ls', '--generation', 'web'], allowed, switches).flags], [['generation', 'web']]);
    assert.deepEqual([...parseArgs(['ls', '--generation'], allowed, switches).flags], [['generation', 'true']]);
  });
  it('refuses an unknown flag, naming it', () => {
    assert.throws(() => parseArgs(['ls', '--bogus'], allowed, switches), /unknown flag --bogus/);
  });
});

// Applied-state saves (a temp dir, the real file): a save asked for while another waits for its turn joins it, and
// every caller resolves once a write that serialized its change is durable; one asked for once a write began gets a
// write of its own.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppliedStateFile, type AppliedState } from '../../../src/puller/applied-state.js';

describe('AppliedStateFile.save', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-applied-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const onDisk = async (f: AppliedStateFile): Promise<AppliedState> => JSON.parse(await readFile(f.path, 'utf8')) as AppliedState;
  const stage = (s: AppliedState, name: string, seq: number): void => {
    s.containers[name] = { generation: 1, seq, digest: null, stagedAt: null };
  };

  it('saves of one state asked for before the write begins share it; each resolves with its change on disk', async () => {
    const f = new AppliedStateFile(dir, 'g1');
    const s: AppliedState = { version: 1, group: 'g1', generation: 1, cursor: 0, containers: {} };
    stage(s, 'a', 1);
    const first = f.save(s);
    stage(s, 'b', 7);
    const second = f.save(s);
    assert.equal(second, first, 'joined the save not begun yet');
    await second;
    assert.deepEqual(Object.fromEntries(Object.entries((await onDisk(f)).containers).map(([n, c]) => [n, c.seq])), { a: 1, b: 7 });
  });

  it('a save asked for once a write began waits for a write of its own', async () => {
    const f = new AppliedStateFile(dir, 'g2');
    const s: AppliedState = { version: 1, group: 'g2', generation: 1, cursor: 0, containers: {} };
    stage(s, 'a', 1);
    const first = f.save(s);
    // Every queued callback has run: the first write has begun (its state serialized with a at 1 only).
    await new Promise((r) => setImmediate(r));
    stage(s, 'a', 2);
    const second = f.save(s);
    assert.notEqual(second, first);
    const third = f.save(s);
    assert.equal(third, second, 'joins the one that waits');
    await first;
    await second;
    assert.equal((await onDisk(f)).containers['a']?.seq, 2);
  });

  it('saves of different state objects are never joined', async () => {
    const f = new AppliedStateFile(dir, 'g3');
    const a: AppliedState = { version: 1, group: 'g3', generation: 1, cursor: 0, containers: {} };
    const b: AppliedState = { version: 1, group: 'g3', generation: 1, cursor: 5, containers: {} };
    const pa = f.save(a);
    const pb = f.save(b);
    assert.notEqual(pb, pa);
    await Promise.all([pa, pb]);
    assert.equal((await onDisk(f)).cursor, 5, 'the later save landed last');
  });
});

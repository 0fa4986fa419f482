// bin/twinlayer.js keeps V8's compiled code between starts: where systemd's CacheDirectory= says, where
// TWINLAYER_COMPILE_CACHE says, or nowhere with `off` — checked on the real CLI process.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnTwinlayer } from '../../support/twinlayer.js';

async function runHelp(env: Record<string, string>): Promise<void> {
  const p = spawnTwinlayer(['--help'], env);
  const timer = setTimeout(() => void p.kill('SIGKILL'), 30_000);
  const code = await p.exited;
  clearTimeout(timer);
  assert.equal(code, 0, p.lines.join('\n'));
}

/** Every file under dir, as paths relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe('the compile cache of bin/twinlayer.js', { timeout: 120_000 }, () => {
  const dirs: string[] = [];
  const freshDir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'tl-ccache-'));
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('is written under systemd\'s CacheDirectory (CACHE_DIRECTORY/compile), and the home dir is left alone', async () => {
    const [cache, home] = [await freshDir(), await freshDir()];
    await runHelp({ CACHE_DIRECTORY: cache, HOME: home });
    assert.ok((await filesUnder(join(cache, 'compile'))).length > 0, 'compiled code cached under CACHE_DIRECTORY/compile');
    assert.deepEqual(await filesUnder(home), []);
  });

  it('is written where TWINLAYER_COMPILE_CACHE says, else under ~/.cache/twinlayer/compile', async () => {
    const [named, home] = [await freshDir(), await freshDir()];
    await runHelp({ TWINLAYER_COMPILE_CACHE: named, HOME: home });
    assert.ok((await filesUnder(named)).length > 0);
    assert.deepEqual(await filesUnder(home), []);
    await runHelp({ HOME: home });
    assert.ok((await filesUnder(join(home, '.cache', 'twinlayer', 'compile'))).length > 0);
  });

  it('as root, is not written into a directory another user owns or others may write (cached code runs as root)', async () => {
    assert.equal(process.getuid?.(), 0, 'the tests run as root');
    const [foreign, open, home] = [await freshDir(), await freshDir(), await freshDir()];
    await chown(foreign, 65534, 65534);
    await chmod(open, 0o777);
    await runHelp({ TWINLAYER_COMPILE_CACHE: foreign, HOME: home });
    await runHelp({ TWINLAYER_COMPILE_CACHE: open, HOME: home });
    assert.deepEqual([...await filesUnder(foreign), ...await filesUnder(open), ...await filesUnder(home)], []);
  });

  it('is not written with TWINLAYER_COMPILE_CACHE=off', async () => {
    const [cache, home] = [await freshDir(), await freshDir()];
    await runHelp({ TWINLAYER_COMPILE_CACHE: 'off', CACHE_DIRECTORY: cache, HOME: home });
    assert.deepEqual([...await filesUnder(cache), ...await filesUnder(home)], []);
  });
});

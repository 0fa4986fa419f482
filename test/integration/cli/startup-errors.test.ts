// `twinlayer push|pull` refuse to start on bad configuration with exit code 2 and a message naming the key, the
// endpoint or the engine — checked against the real CLI process, a real S3 server and a real dockerd.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startS3Server, S3RVER_CREDENTIALS } from '../../../src/s3server/index.js';
import { freePort, spawnTwinlayer } from '../../support/twinlayer.js';
import { startEngine, type Engine } from '../../../src/lab/engine.js';
import { GroupKeys } from '../../../src/lab/group-keys.js';

const creds = { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey };

async function run(args: string[], env: Record<string, string>): Promise<{ code: number | string; out: string }> {
  const p = spawnTwinlayer(args, env);
  const timer = setTimeout(() => void p.kill('SIGKILL'), 30_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, out: p.lines.join('\n') };
}

describe('start-up refusals', { timeout: 180_000 }, () => {
  let dir: string;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let engine: Engine;
  let keys: GroupKeys;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tl-cli-'));
    keys = await GroupKeys.create(join(dir, 'keys'), ['cli-a', 'cli-b']);
    s3 = await startS3Server({ dir: join(dir, 's3'), buckets: ['present'], silent: true });
    engine = await startEngine({ name: 'cli' });
  });
  after(async () => {
    await engine?.stop();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const base = (): Record<string, string> => ({
    ...creds, TWINLAYER_ENDPOINT: s3.endpoint, TWINLAYER_BUCKET: 'present', TWINLAYER_PATH_STYLE: 'true',
    TWINLAYER_STATE_DIR: join(dir, 'state'), TWINLAYER_DOCKER_SOCKET: engine.socketPath,
    TWINLAYER_HOST_ID: 'cli-a', ...keys.env('cli-a'),
  });

  it('a wrong type names the key, its variable and the value', async () => {
    const r = await run(['push'], { ...base(), TWINLAYER_DEBOUNCE_QUIET_MS: 'fast' });
    assert.equal(r.code, 2);
    assert.match(r.out, /config key `debounceQuietMs` \(env TWINLAYER_DEBOUNCE_QUIET_MS\).*"fast"/);
  });

  it('a missing bucket setting names the key', async () => {
    const env = base();
    delete env['TWINLAYER_BUCKET'];
    const r = await run(['pull'], env);
    assert.equal(r.code, 2);
    assert.match(r.out, /config key `bucket` \(env TWINLAYER_BUCKET\)/);
  });

  it('a bucket that does not exist on the server is named', async () => {
    const r = await run(['push'], { ...base(), TWINLAYER_BUCKET: 'absent-bucket' });
    assert.equal(r.code, 2);
    assert.match(r.out, /bucket absent-bucket does not exist at http:\/\/127\.0\.0\.1:\d+/);
  });

  it('an unreachable endpoint is named, within a bounded time', async () => {
    const port = await freePort();
    const started = Date.now();
    const r = await run(['pull'], { ...base(), TWINLAYER_ENDPOINT: `http://127.0.0.1:${port}` });
    assert.equal(r.code, 2);
    assert.match(r.out, new RegExp(`S3 endpoint http://127\\.0\\.0\\.1:${port} unreachable`));
    assert.ok(Date.now() - started < 25_000);
  });

  it('missing credentials are named as such, not as an outage', async () => {
    const env = base();
    delete env['AWS_ACCESS_KEY_ID'];
    delete env['AWS_SECRET_ACCESS_KEY'];
    const r = await run(['push'], { ...env, AWS_CONFIG_FILE: join(dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'), AWS_EC2_METADATA_DISABLED: 'true' });
    assert.equal(r.code, 2);
    assert.match(r.out, /no S3 credentials/);
  });

  it('an unknown key in the config file is refused', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'bucket: present\npollIntervalMillis: 5\n');
    const r = await run(['pull', '--config', file], { ...creds });
    assert.equal(r.code, 2);
    assert.match(r.out, /unknown config key\(s\): pollIntervalMillis/);
  });

  it('a docker socket that does not answer is named', async () => {
    const r = await run(['push'], { ...base(), TWINLAYER_DOCKER_SOCKET: join(dir, 'no.sock') });
    assert.equal(r.code, 2);
    assert.match(r.out, /no\.sock|docker/i);
  });

  it('the hook refuses to listen beyond loopback without a token', async () => {
    const r = await run(['pull'], { ...base(), TWINLAYER_HOOK_LISTEN: `0.0.0.0:${await freePort()}` });
    assert.equal(r.code, 2);
    assert.match(r.out, /token/i);
  });
});

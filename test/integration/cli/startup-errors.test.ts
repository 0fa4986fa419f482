// `twinlayer push|pull|agent` refuse to start on bad configuration with exit code 2 and a message naming the key, the
// endpoint or the engine — checked against the real CLI process, a real S3 server and a real dockerd. Secure by
// default: no trusted key, or a writer without a trusted signing key, stops the start unless acceptUnsigned.
// `twinlayer keygen` and `pubkey` make and show keys.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
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
  /** The hook listens before the bucket and engine checks: on a port of the test's, not the default 7450. */
  let hookListen: string;

  before(async () => {
    hookListen = `127.0.0.1:${await freePort()}`;
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
    TWINLAYER_HOST_ID: 'cli-a', ...keys.env('cli-a'), TWINLAYER_HOOK_LISTEN: hookListen, TWINLAYER_HOOK_TOKEN: 'cli-token-0123456789abcdef',
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

  it('push with metricsListen: a start-up refusal still exits 2 (the listener is closed), a taken metrics port is named', async () => {
    const listen = `127.0.0.1:${await freePort()}`;
    const refused = await run(['push'], { ...base(), TWINLAYER_METRICS_LISTEN: listen, TWINLAYER_DOCKER_SOCKET: join(dir, 'no.sock') });
    assert.equal(refused.code, 2, refused.out);
    assert.match(refused.out, /"msg":"metrics listening"/, 'it was listening before the engine check');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const r = await run(['push'], { ...base(), TWINLAYER_METRICS_LISTEN: `127.0.0.1:${(taken.address() as AddressInfo).port}` });
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /cannot listen on 127\.0\.0\.1:\d+.*HOOK_LISTEN_FAILED/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('the hook refuses to listen beyond loopback without a token', async () => {
    const env = base();
    delete env['TWINLAYER_HOOK_TOKEN'];
    const r = await run(['pull'], { ...env, TWINLAYER_HOOK_LISTEN: `0.0.0.0:${await freePort()}` });
    assert.equal(r.code, 2);
    assert.match(r.out, /token/i);
  });

  const unsigned = (): Record<string, string> => {
    const env = base();
    delete env['TWINLAYER_TRUSTED_KEYS'];
    delete env['TWINLAYER_SIGNING_KEY_FILE'];
    return env;
  };

  it('a standby, an agent and a pusher with no trusted key refuse to start, naming trustedKeys and acceptUnsigned', async () => {
    for (const cmd of ['pull', 'agent', 'push']) {
      const r = await run([cmd], { ...unsigned(), TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}` });
      assert.equal(r.code, 2, `${cmd}: ${r.out}`);
      assert.match(r.out, new RegExp(`no trusted keys: config key \`trustedKeys\` \\(env TWINLAYER_TRUSTED_KEYS\\) is empty, so \`twinlayer ${cmd}\` would accept`));
      assert.match(r.out, /twinlayer keygen/);
      assert.match(r.out, /acceptUnsigned=true \(TWINLAYER_ACCEPT_UNSIGNED\)/);
      assert.match(r.out, /\[TRUST_MISSING\]/);
    }
  });

  it('a writer without its signing key, with a key others may read, or with a key the group does not trust refuses to start', async () => {
    const missing = await run(['push'], { ...base(), TWINLAYER_SIGNING_KEY_FILE: join(dir, 'absent.key') });
    assert.equal(missing.code, 2);
    assert.match(missing.out, /no signing key at .*absent\.key \(config key `signingKeyFile`, env TWINLAYER_SIGNING_KEY_FILE\)/);
    assert.match(missing.out, /\[SIGNING_KEY_MISSING\]/);

    const loose = join(dir, 'loose.key');
    await writeFile(loose, await readFile(keys.keyFile('cli-a')));
    await chmod(loose, 0o644);
    const looseRun = await run(['agent'], { ...base(), TWINLAYER_SIGNING_KEY_FILE: loose, TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}` });
    assert.equal(looseRun.code, 2);
    assert.match(looseRun.out, /may be read by others \(mode 0644\).*chmod 600/);

    // cli-b's key on a host configured as cli-a: listed for another host.
    const other = await run(['push'], { ...base(), TWINLAYER_SIGNING_KEY_FILE: keys.keyFile('cli-b') });
    assert.equal(other.code, 2);
    assert.match(other.out, /listed in trustedKeys for host cli-b, but this host is cli-a/);
    // A key not in the list at all: the message gives the line to add.
    const fresh = await run(['keygen', '--out', join(dir, 'fresh.key')], { TWINLAYER_HOST_ID: 'cli-a' });
    const untrusted = await run(['push'], { ...base(), TWINLAYER_SIGNING_KEY_FILE: join(dir, 'fresh.key') });
    assert.equal(untrusted.code, 2);
    assert.match(untrusted.out, /is not in trustedKeys: the other hosts would refuse everything it writes/);
    const freshLine = fresh.out.split('\n').find((l) => /ed25519:/.test(l));
    assert.ok(freshLine !== undefined && untrusted.out.includes(freshLine), 'names the line to add');
    assert.match(untrusted.out, /\[SIGNING_KEY_UNTRUSTED\]/);

    const badLine = await run(['pull'], { ...base(), TWINLAYER_TRUSTED_KEYS: 'cli-a ed25519:short' });
    assert.equal(badLine.code, 2);
    assert.match(badLine.out, /config key `trustedKeys` \(env TWINLAYER_TRUSTED_KEYS\): expected "\[<hostId> \]ed25519:<44 base64 characters>"/);
  });

  it('acceptUnsigned lets a standby without keys start, loudly', async () => {
    const p = spawnTwinlayer(['pull'], { ...unsigned(), TWINLAYER_ACCEPT_UNSIGNED: 'true', TWINLAYER_HOOK_LISTEN: `127.0.0.1:${await freePort()}`, TWINLAYER_HOOK_TOKEN: 'cli-token-0123456789abcdef' });
    const listening = await p.waitForLine(/hook listening/, 30_000).then(() => true, (err: unknown) => err);
    const code = await p.kill('SIGTERM');
    assert.equal(listening, true);
    assert.equal(code, 0, p.lines.join('\n'));
    assert.ok(p.lines.some((l) => /accepting unsigned bucket objects \(acceptUnsigned\)/.test(l)));
  });

  it('keygen writes a 0600 key and prints its line; never replaces a key; pubkey prints the same line', async () => {
    const out = join(dir, 'etc', 'signing.key');
    const made = await run(['keygen'], { TWINLAYER_HOST_ID: 'gen-host', TWINLAYER_SIGNING_KEY_FILE: out });
    assert.equal(made.code, 0, made.out);
    const line = made.out.split('\n').find((l) => /ed25519:/.test(l)) ?? '';
    assert.match(line, /^gen-host ed25519:[A-Za-z0-9+/]{43}=$/);
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    const again = await run(['keygen'], { TWINLAYER_HOST_ID: 'gen-host', TWINLAYER_SIGNING_KEY_FILE: out });
    assert.equal(again.code, 2);
    assert.match(again.out, /a file exists there; keygen never replaces a key.*\[SIGNING_KEY_EXISTS\]/);
    const shown = await run(['pubkey', '--key', out], { TWINLAYER_HOST_ID: 'gen-host' });
    assert.equal(shown.code, 0);
    assert.equal(shown.out.trim(), line);
  });
});

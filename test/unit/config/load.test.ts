import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, loadKeyConfig } from '../../../src/config/load.js';
import { configKeys, envName } from '../../../src/config/schema.js';
import { twinPolicyOf } from '../../../src/config/twin-policy.js';
import { DEFAULT_TWIN_POLICY } from '../../../src/docker/twin-policy.js';

const dir = mkdtempSync(join(tmpdir(), 'tl-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function rejects(fn: () => unknown, key: string | undefined, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.context.key, key);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('loadConfig', () => {
  it('applies defaults and reads TWINLAYER_* variables', () => {
    const c = loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_DEBOUNCE_QUIET_MS: '20', TWINLAYER_PATH_STYLE: 'true', TWINLAYER_EXCLUDES: 'tmp/**, var/cache/**' } });
    assert.equal(c.bucket, 'twins');
    assert.equal(c.debounceQuietMs, 20);
    assert.equal(c.debounceMaxMs, 500);
    assert.equal(c.pathStyle, true);
    assert.deepEqual(c.excludes, ['tmp/**', 'var/cache/**']);
    assert.equal(c.hookListen, '127.0.0.1:7450');
    assert.ok(Object.isFrozen(c));
  });

  it('names the key of a wrong type with its env var and the value', () => {
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_POLL_INTERVAL_MS: 'soon' } }), 'pollIntervalMs', /pollIntervalMs.*TWINLAYER_POLL_INTERVAL_MS.*"soon"/);
  });

  it('reads the group\'s keys from a comma-separated variable or a YAML list; signed by default', () => {
    const a = 'host-a ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=';
    const b = 'host-b ed25519:PUAXw+hDiVqStwqnTRt+vJyYLM8uxJaMwM1V8Sr0Zgw=';
    const fromEnv = loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_TRUSTED_KEYS: ` ${a}, ${b} ` } });
    assert.deepEqual(fromEnv.trustedKeys, [a, b]);
    assert.equal(fromEnv.acceptUnsigned, false);
    assert.equal(fromEnv.signingKeyFile, '/etc/twinlayer/signing.key');
    const file = join(dir, 'keys.yaml');
    writeFileSync(file, `bucket: twins\ntrustedKeys:\n  - ${a}\n  - ${b}\nacceptUnsigned: true\n`);
    const fromFile = loadConfig({ file, env: {} });
    assert.deepEqual(fromFile.trustedKeys, [a, b]);
    assert.equal(fromFile.acceptUnsigned, true);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_TRUSTED_KEYS: `${a},host-b ed25519:nope` } }), 'trustedKeys', /`trustedKeys` \(env TWINLAYER_TRUSTED_KEYS\): expected "\[<hostId> \]ed25519:/);
    // keygen needs no bucket.
    assert.deepEqual({ ...loadKeyConfig({ env: { TWINLAYER_HOST_ID: 'h1', TWINLAYER_SIGNING_KEY_FILE: '/k' } }) }, { hostId: 'h1', signingKeyFile: '/k' });
  });

  it('refuses a missing bucket, naming it', () => {
    rejects(() => loadConfig({ env: {} }), 'bucket', /`bucket` \(env TWINLAYER_BUCKET\)/);
  });

  it('refuses a bad endpoint URL and a too-short bucket name', () => {
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ENDPOINT: 'not a url' } }), 'endpoint', /endpoint/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'ab' } }), 'bucket', /3-63/);
  });

  it('reads a YAML file, lets env win, and refuses unknown keys in it', () => {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'bucket: from-file\ngroup: edge\npollIntervalMs: 100\n');
    const c = loadConfig({ env: { TWINLAYER_GROUP: 'core' }, file });
    assert.equal(c.bucket, 'from-file');
    assert.equal(c.group, 'core');
    assert.equal(c.pollIntervalMs, 100);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'bucket: twins\nbuckett: typo\n');
    rejects(() => loadConfig({ env: {}, file: bad }), undefined, /unknown config key.*buckett/);
  });

  it('reads the twin policy: safe defaults, lists from env or file, bad entries named by key', () => {
    const d = twinPolicyOf(loadConfig({ env: { TWINLAYER_BUCKET: 'twins' } }));
    assert.deepEqual(d, DEFAULT_TWIN_POLICY);
    assert.equal(loadConfig({ env: { TWINLAYER_BUCKET: 'twins' } }).trustUnsignedSpecs, false);
    const c = loadConfig({ env: {
      TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_CAPABILITIES: 'NET_ADMIN, CAP_SYS_TIME', TWINLAYER_ALLOWED_BIND_ROOTS: '/srv/twins,/etc/app',
      TWINLAYER_ALLOWED_HOST_NAMESPACES: 'network,pid', TWINLAYER_ALLOWED_SYSCTLS: 'net.*,kernel.msgmax', TWINLAYER_ALLOW_PRIVILEGED: 'yes',
      TWINLAYER_TRUST_UNSIGNED_SPECS: 'true',
    } });
    assert.deepEqual(twinPolicyOf(c), {
      ...DEFAULT_TWIN_POLICY, allowPrivileged: true, allowedCapabilities: ['NET_ADMIN', 'CAP_SYS_TIME'], allowedBindRoots: ['/srv/twins', '/etc/app'],
      allowedHostNamespaces: ['network', 'pid'], allowedSysctls: ['net.*', 'kernel.msgmax'],
    });
    assert.equal(c.trustUnsignedSpecs, true);
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'bucket: twins\nallowedDevices: [/dev/net/tun, /dev/ppp]\n');
    assert.deepEqual(loadConfig({ env: {}, file }).allowedDevices, ['/dev/net/tun', '/dev/ppp']);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_NAMESPACES: 'network,mount' } }), 'allowedHostNamespaces', /allowedHostNamespaces/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_BIND_ROOTS: 'srv' } }), 'allowedBindRoots', /absolute path/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_BIND_ROOTS: '/srv/' } }), 'allowedBindRoots', /without a trailing slash/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_BIND_ROOTS: '/srv/../etc' } }), 'allowedBindRoots', /normalized/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_SYSCTLS: 'net/ipv4' } }), 'allowedSysctls', /sysctl/);
  });

  it('reads the host-side gates: host ports and addresses, volume drivers and options, the cgroup namespace', () => {
    const d = loadConfig({ env: { TWINLAYER_BUCKET: 'twins' } });
    assert.deepEqual([d.allowedHostPorts, d.allowedHostIps, d.allowedVolumeDrivers, d.allowVolumeOptions], [['1024-65535'], [], ['local'], false]);
    const c = loadConfig({ env: {
      TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_PORTS: '53/udp, 443/tcp,8000-8999', TWINLAYER_ALLOWED_HOST_IPS: '127.0.0.1,10.0.0.0/24,fd00::/64',
      TWINLAYER_ALLOWED_VOLUME_DRIVERS: 'local,rexray/ebs', TWINLAYER_ALLOW_VOLUME_OPTIONS: 'true', TWINLAYER_ALLOWED_HOST_NAMESPACES: 'network,cgroup',
    } });
    assert.deepEqual(twinPolicyOf(c), {
      ...DEFAULT_TWIN_POLICY, allowedHostPorts: ['53/udp', '443/tcp', '8000-8999'], allowedHostIps: ['127.0.0.1', '10.0.0.0/24', 'fd00::/64'],
      allowedVolumeDrivers: ['local', 'rexray/ebs'], allowVolumeOptions: true, allowedHostNamespaces: ['network', 'cgroup'],
    });
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_PORTS: '53/icmp' } }), 'allowedHostPorts', /PORT or LOW-HIGH/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_PORTS: '9000-8000' } }), 'allowedHostPorts', /within 1-65535/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_PORTS: '0' } }), 'allowedHostPorts', /within 1-65535/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_IPS: 'localhost' } }), 'allowedHostIps', /not an IP address or CIDR/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_HOST_IPS: '10.0.0.0/33' } }), 'allowedHostIps', /prefix length/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOWED_VOLUME_DRIVERS: 'bad driver' } }), 'allowedVolumeDrivers', /volume driver/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_ALLOW_VOLUME_OPTIONS: 'maybe' } }), 'allowVolumeOptions', /allowVolumeOptions/);
  });

  it('refuses debounceMaxMs below debounceQuietMs', () => {
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_DEBOUNCE_QUIET_MS: '100', TWINLAYER_DEBOUNCE_MAX_MS: '50' } }), 'debounceMaxMs', /debounceMaxMs/);
  });

  it('reads checkpointQuietMs (default 5 s, 0 allowed) and refuses one past half the checkpoint\'s one-minute bound, naming it', () => {
    assert.equal(loadConfig({ env: { TWINLAYER_BUCKET: 'twins' } }).checkpointQuietMs, 5000);
    assert.equal(loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_CHECKPOINT_QUIET_MS: '0' } }).checkpointQuietMs, 0);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_CHECKPOINT_QUIET_MS: '40000' } }), 'checkpointQuietMs', /checkpointQuietMs.*TWINLAYER_CHECKPOINT_QUIET_MS.*"40000"/);
    rejects(() => loadConfig({ env: { TWINLAYER_BUCKET: 'twins', TWINLAYER_CHECKPOINT_QUIET_MS: '-1' } }), 'checkpointQuietMs', /checkpointQuietMs/);
  });

  it('maps every key to a TWINLAYER_ variable', () => {
    for (const key of configKeys) assert.match(envName(key), /^TWINLAYER_[A-Z0-9_]+$/);
    assert.equal(envName('hookAllowNoToken'), 'TWINLAYER_HOOK_ALLOW_NO_TOKEN');
  });
});

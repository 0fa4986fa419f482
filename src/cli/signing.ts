// The signature set-up of a command, from the frozen config, checked at start so a misconfigured host stops there
// (exit 2, naming the key) rather than at a failover: a standby with no trusted key would stage and boot whatever
// anyone who can write the bucket puts there, and a writer whose key the group does not trust would have everything
// it writes refused.
import { envName } from '../config/schema.js';
import type { Config } from '../config/schema.js';
import { TwinlayerError } from '../log/errors.js';
import type { Logger } from '../log/logger.js';
import { readSigningKeyFile, Signatures, SigningKeyError, TrustedKey, type SigningKey } from '../store/index.js';

/** What a command does with the bucket: `pull` and `ls` only read; `push` and `agent` also write. */
export type BucketRole = 'push' | 'pull' | 'agent' | 'ls' | 'restore';

export class SigningSetupError extends TwinlayerError {
  constructor(code: 'TRUST_MISSING' | 'TRUST_INVALID' | 'SIGNING_KEY_UNTRUSTED', message: string, context: { key: string; hint?: string }) {
    super(code, message, context);
  }
}

const acceptHint = `or set acceptUnsigned=true (${envName('acceptUnsigned')}) to accept unsigned commits, which lets anyone who can write the bucket choose what this host stages and boots`;

function trustedKeys(config: Config): TrustedKey[] {
  const keys = config.trustedKeys.map((line) => {
    try {
      return TrustedKey.fromLine(line);
    } catch (err) {
      throw new SigningSetupError('TRUST_INVALID', `config key \`trustedKeys\` (env ${envName('trustedKeys')}): ${(err as Error).message}`, { key: 'trustedKeys' });
    }
  });
  const seen = new Map<string, TrustedKey>();
  for (const k of keys) {
    const other = seen.get(k.keyId);
    if (other !== undefined) throw new SigningSetupError('TRUST_INVALID', `config key \`trustedKeys\` (env ${envName('trustedKeys')}) lists the same key twice: "${other.line}" and "${k.line}"`, { key: 'trustedKeys' });
    seen.set(k.keyId, k);
  }
  return keys;
}

async function signingKey(config: Config, role: BucketRole, log: Logger): Promise<SigningKey | null> {
  try {
    return await readSigningKeyFile(config.signingKeyFile, config.hostId);
  } catch (err) {
    // A key that is there but unusable (others may read it, not Ed25519) stops the start even under acceptUnsigned.
    if (!(err instanceof SigningKeyError) || err.code !== 'SIGNING_KEY_MISSING') throw err;
    if (config.acceptUnsigned) {
      log.warn('no signing key: this host writes unsigned objects (acceptUnsigned)', { signingKeyFile: config.signingKeyFile });
      return null;
    }
    throw new SigningKeyError('SIGNING_KEY_MISSING', `no signing key at ${config.signingKeyFile} (config key \`signingKeyFile\`, env ${envName('signingKeyFile')}): \`twinlayer ${role}\` writes to the bucket, and the group refuses unsigned objects`, {
      path: config.signingKeyFile,
      hint: `run \`twinlayer keygen\` on this host and add the line it prints to trustedKeys on every host of the group; ${acceptHint}`,
    });
  }
}

/** The Signatures of `role` on this host, or a start-up error naming the config key to fix. */
export async function signaturesFor(config: Config, role: BucketRole, log: Logger): Promise<Signatures> {
  const trusted = trustedKeys(config);
  if (trusted.length === 0 && !config.acceptUnsigned) {
    throw new SigningSetupError('TRUST_MISSING', `no trusted keys: config key \`trustedKeys\` (env ${envName('trustedKeys')}) is empty, so \`twinlayer ${role}\` would accept whatever anyone who can write the bucket puts there`, {
      key: 'trustedKeys',
      hint: `run \`twinlayer keygen\` on every host of the group and list every line it prints in trustedKeys on all of them; ${acceptHint}`,
    });
  }
  const signer = role === 'pull' || role === 'ls' || role === 'restore' ? null : await signingKey(config, role, log);
  if (signer !== null && trusted.length > 0) {
    const listed = trusted.find((k) => k.keyId === signer.keyId);
    if (listed === undefined) {
      throw new SigningSetupError('SIGNING_KEY_UNTRUSTED', `this host's signing key (${config.signingKeyFile}, key ${signer.keyId}) is not in trustedKeys: the other hosts would refuse everything it writes`, {
        key: 'trustedKeys',
        hint: `add "${signer.publicLine}" to trustedKeys on every host of the group`,
      });
    }
    if (listed.host !== null && listed.host !== config.hostId) {
      throw new SigningSetupError('SIGNING_KEY_UNTRUSTED', `this host's signing key is listed in trustedKeys for host ${listed.host}, but this host is ${config.hostId} (config key \`hostId\`): what it writes would be refused`, {
        key: 'trustedKeys',
        hint: `each host has its own key; run \`twinlayer keygen\` here and list "${config.hostId} ed25519:…" as it prints`,
      });
    }
  }
  const signatures = new Signatures({ signer, trusted, acceptUnsigned: config.acceptUnsigned });
  if (config.acceptUnsigned) log.warn('accepting unsigned bucket objects (acceptUnsigned): anyone who can write the bucket can choose what this host stages and boots', { trusted: trusted.length });
  log.info('signatures', { required: signatures.required, signer: signer?.keyId ?? null, trusted: trusted.map((k) => `${k.host ?? '*'}:${k.keyId}`) });
  return signatures;
}

// `twinlayer keygen` and `twinlayer pubkey`: a host's Ed25519 signing key and the trustedKeys line that names it.
import { loadKeyConfig } from '../config/load.js';
import { readSigningKeyFile, SigningKey, writeNewSigningKey } from '../store/index.js';

/** `twinlayer keygen`: a new private key for this host at `--out` (default: signingKeyFile), mode 0600, never over an
 *  existing file; prints the public key line for trustedKeys on stdout. */
export async function runKeygen(flags: Map<string, string>): Promise<number> {
  const { hostId, signingKeyFile } = loadKeyConfig({ file: flags.get('config') });
  const out = flags.get('out') ?? signingKeyFile;
  const key = SigningKey.generate(hostId);
  await writeNewSigningKey(out, key);
  process.stdout.write(`${key.publicLine}\n`);
  process.stderr.write(`twinlayer: wrote the private key of ${hostId} to ${out} (mode 0600); add the line above to trustedKeys on every host of the group\n`);
  return 0;
}

/** `twinlayer pubkey`: the trustedKeys line of this host's private key (`--key`, default: signingKeyFile). */
export async function runPubkey(flags: Map<string, string>): Promise<number> {
  const { hostId, signingKeyFile } = loadKeyConfig({ file: flags.get('config') });
  const key = await readSigningKeyFile(flags.get('key') ?? signingKeyFile, hostId);
  process.stdout.write(`${key.publicLine}\n`);
  return 0;
}

// `twinlayer s3`: the embedded S3 server (s3rver, a development dependency) for development and tests.
import { writeFile } from 'node:fs/promises';
import type { Logger } from '../log/logger.js';
import { importDevOnly } from './dev-only.js';
import { onShutdown } from './shutdown.js';

export async function run(flags: Map<string, string>, log: Logger): Promise<void> {
  const listen = flags.get('listen') ?? '127.0.0.1:9000';
  const m = /^(.+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen: expected HOST:PORT, got ${JSON.stringify(listen)}`);
  const dir = flags.get('dir') ?? './s3-data';
  const buckets = (flags.get('bucket') ?? 'twinlayer').split(',').filter(Boolean);
  const { startS3Server } = await importDevOnly(
    's3',
    'is the embedded S3 server for development and tests',
    '; production hosts use an S3-compatible server (MinIO, AWS S3, Ceph RGW, Garage, SeaweedFS, Cloudflare R2) named by TWINLAYER_ENDPOINT',
    () => import('../s3server/index.js'),
  );
  const server = await startS3Server({ dir, host: m[1]!, port: Number(m[2]), buckets, silent: true });
  // Handlers before the line and the port file, which callers wait for before they signal (see serve.ts).
  const shutdown = onShutdown(log, () => server.close());
  log.info('embedded S3 server listening (development and tests only)', { endpoint: server.endpoint, dir, buckets });
  const portFile = flags.get('port-file');
  if (portFile) await writeFile(portFile, String(server.port));
  await shutdown;
}

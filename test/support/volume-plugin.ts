// A minimal Docker volume plugin (the legacy VolumeDriver HTTP API over a unix socket in /run/docker/plugins), so
// a test can give a container a volume of a driver that is not `local`. Its volumes are plain dirs under `dir`.
// The socket name is unique per call: engines of other tests on this machine never see the same driver name.
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';

export interface VolumePlugin {
  name: string;
  close(): Promise<void>;
}

const pluginDir = '/run/docker/plugins';

export async function startVolumePlugin(dir: string): Promise<VolumePlugin> {
  const name = `tl-test-${randomBytes(4).toString('hex')}`;
  const socket = join(pluginDir, `${name}.sock`);
  await mkdir(pluginDir, { recursive: true });
  await mkdir(dir, { recursive: true });
  const volumes = new Set<string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = chunks.length === 0 ? {} : (JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { Name?: string });
        const vol = body.Name ?? '';
        const mountpoint = join(dir, vol.replace(/[^a-zA-Z0-9_.-]/g, '_'));
        let answer: unknown = { Err: '' };
        switch (req.url) {
          case '/Plugin.Activate': answer = { Implements: ['VolumeDriver'] }; break;
          case '/VolumeDriver.Capabilities': answer = { Capabilities: { Scope: 'local' } }; break;
          case '/VolumeDriver.Create': volumes.add(vol); await mkdir(mountpoint, { recursive: true }); break;
          case '/VolumeDriver.Remove': volumes.delete(vol); break;
          case '/VolumeDriver.Get': answer = volumes.has(vol) ? { Volume: { Name: vol, Mountpoint: mountpoint }, Err: '' } : { Err: 'no such volume' }; break;
          case '/VolumeDriver.List': answer = { Volumes: [...volumes].map((v) => ({ Name: v })), Err: '' }; break;
          case '/VolumeDriver.Path':
          case '/VolumeDriver.Mount': answer = { Mountpoint: mountpoint, Err: '' }; break;
          case '/VolumeDriver.Unmount': break;
          default: answer = { Err: `not implemented: ${req.url ?? ''}` };
        }
        res.writeHead(200, { 'content-type': 'application/vnd.docker.plugins.v1.2+json' });
        res.end(JSON.stringify(answer));
      })();
    });
  });
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  return {
    name,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(socket, { force: true });
    },
  };
}

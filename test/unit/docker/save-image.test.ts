// DockerRuntime.saveImage against a stand-in engine on a unix socket that sends the start of an archive and then
// nothing: the save fails once no byte came for idleMs after the first (an engine slow to start its answer is waited
// for), and its signal aborts it; either way the request is closed
// (the engine sees its connection go), so neither a stop nor the saves queued behind it wait for a stalled engine.
import { after, before, describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DockerRuntime } from '../../../src/docker/index.js';

async function drain(stream: NodeJS.ReadableStream): Promise<number> {
  let n = 0;
  for await (const c of stream as AsyncIterable<Buffer>) n += c.length;
  return n;
}

describe('DockerRuntime.saveImage', { timeout: 30_000 }, () => {
  let dir = '';
  let server: Server;
  /** Each request the stand-in got, and whether its connection has closed. */
  const requests: Array<{ path: string; closed: Promise<void> }> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'save-image-'));
    server = createServer((req: IncomingMessage, res) => {
      requests.push({ path: req.url ?? '', closed: new Promise((resolve) => res.once('close', () => resolve())) });
      if (req.url === '/images/sha256:slow/get') {
        // A graphdriver engine exports the whole image before its first byte: 600 ms here, 3 idle periods, then all.
        setTimeout(() => res.end(Buffer.alloc(4096)), 600);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/x-tar' });
      res.write(Buffer.alloc(512)); // the start of an archive, then a stall
    });
    await new Promise<void>((resolve) => server.listen(join(dir, 'docker.sock'), resolve));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('fails when the engine sends nothing for idleMs, and closes the request', async () => {
    const runtime = new DockerRuntime({ socketPath: join(dir, 'docker.sock') });
    const stream = await runtime.saveImage('sha256:aaa', { idleMs: 200 });
    await assert.rejects(drain(stream), /docker save image failed: the engine sent nothing for 200 ms/);
    assert.equal(requests.at(-1)?.path, '/images/sha256:aaa/get');
    await requests.at(-1)?.closed;
  });

  it('waits for the first byte however long the engine prepares the save (idleMs counts from it)', async () => {
    const runtime = new DockerRuntime({ socketPath: join(dir, 'docker.sock') });
    const stream = await runtime.saveImage('sha256:slow', { idleMs: 200 });
    assert.equal(await drain(stream), 4096);
  });

  it('fails when its signal is aborted mid-stream, and closes the request', async () => {
    const runtime = new DockerRuntime({ socketPath: join(dir, 'docker.sock') });
    const ac = new AbortController();
    const stream = await runtime.saveImage('sha256:bbb', { signal: ac.signal, idleMs: 3600_000 });
    const read = drain(stream);
    ac.abort(new Error('shipper stopped'));
    await assert.rejects(read, /docker save image failed/);
    await requests.at(-1)?.closed;
  });

  it('fails at once when its signal is aborted already', async () => {
    const runtime = new DockerRuntime({ socketPath: join(dir, 'docker.sock') });
    await assert.rejects(runtime.saveImage('sha256:ccc', { signal: AbortSignal.abort(new Error('stopped')) }), /docker save image failed/);
  });
});

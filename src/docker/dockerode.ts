// dockerode as twinlayer uses it: over the engine's unix socket, never over SSH and never building images. Two of
// its modules load large dependencies at require time for those only: docker-modem's SSH transport (ssh2) and
// dockerode's BuildKit session (@grpc/grpc-js, @grpc/proto-loader, protobufjs). Loaded eagerly they cost each
// process about 11 MB of RSS and 4.4 MB of V8 heap (a third of what dockerode costs; measured 2026-12-07 with
// Node 24). Here each is put in the module cache as a stand-in that loads the real module at its first call: the
// same function, loaded only if ever called. Were a dockerode upgrade to move them, the stand-in is skipped and
// dockerode loads as it is.
import { createRequire, Module } from 'node:module';
import type DockerType from 'dockerode';

const require = createRequire(import.meta.url);

/** Puts a stand-in for the CommonJS module at `file` (which exports a function) into require's cache. */
function deferFunctionModule(file: string): void {
  if (require.cache[file] !== undefined) return;
  let real: ((...args: unknown[]) => unknown) | undefined;
  const standIn = function (this: unknown, ...args: unknown[]): unknown {
    if (real === undefined) {
      delete require.cache[file];
      real = require(file) as (...args: unknown[]) => unknown;
    }
    return real.apply(this, args);
  };
  const m = new Module(file);
  m.filename = file;
  m.loaded = true;
  m.exports = standIn;
  require.cache[file] = m;
}

function deferHeavyParts(): void {
  try {
    const dockerodeMain = require.resolve('dockerode');
    const fromDockerode = createRequire(dockerodeMain);
    deferFunctionModule(fromDockerode.resolve('./session'));
    deferFunctionModule(createRequire(fromDockerode.resolve('docker-modem')).resolve('./ssh'));
  } catch {
    // Another layout: dockerode loads whole.
  }
}

deferHeavyParts();
const Docker = require('dockerode') as typeof DockerType;
export default Docker;

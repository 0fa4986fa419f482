// src/docker/dockerode.ts: dockerode loads without ssh2 and gRPC (the SSH transport and the BuildKit session
// twinlayer never uses), and their modules still work when called: the stand-in loads the real one then.
import { describe, it } from 'node:test';
import { strict as assert } from 'node:assert';
import { Agent } from 'node:http';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import Docker from '../../../src/docker/dockerode.js';

const require = createRequire(import.meta.url);
const loaded = (pkg: string): boolean => Object.keys(require.cache).some((f) => f.includes(`/node_modules/${pkg}/`));

describe('dockerode without its SSH transport and BuildKit session until they are called', () => {
  it('a client over a unix socket loads neither ssh2 nor gRPC', () => {
    const docker = new Docker({ socketPath: '/nonexistent/docker.sock' });
    assert.equal(typeof docker.listContainers, 'function');
    assert.equal(loaded('ssh2'), false, 'ssh2 loaded');
    assert.equal(loaded('@grpc/grpc-js'), false, '@grpc/grpc-js loaded');
    assert.equal(loaded('protobufjs'), false, 'protobufjs loaded');
  });

  it('the SSH transport, when called, is the real one: it loads ssh2 and returns its HTTP agent', () => {
    const modem = require.resolve('docker-modem', { paths: [dirname(require.resolve('dockerode'))] });
    const ssh = require(createRequire(modem).resolve('./ssh')) as (opt: Record<string, unknown>) => unknown;
    const agent = ssh({ host: '127.0.0.1', port: 1, username: 'nobody' });
    assert.ok(agent instanceof Agent);
    assert.equal(loaded('ssh2'), true);
  });
});

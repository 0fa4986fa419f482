#!/usr/bin/env node
// The twinlayer command. It runs the compiled JavaScript in dist/ (built from src/ by `npm run build`, which
// scripts/setup.sh runs): a start loads no TypeScript loader and depends on no transpile cache.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(`twinlayer: needs Node >= 22.18 (24 recommended); ${process.execPath} is ${process.version} (README: "Running it for real")\n`);
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'dist', 'cli', 'main.js');
if (!existsSync(main)) {
  process.stderr.write(`twinlayer: ${main} is missing: build it with \`npm run build\` in ${root} (README: "Running it for real")\n`);
  process.exit(2);
}
await import(pathToFileURL(main).href);

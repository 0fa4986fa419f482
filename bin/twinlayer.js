#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader (installed as a dependency), so there is no build step to forget.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { register } from 'tsx/esm/api';

// The AWS SDK warns on every start under Node 20 that its 2027 releases need Node 22; say it once, as a log line.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const text = typeof warning === 'string' ? warning : warning?.message ?? '';
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0]?.type;
  if (type === 'NodeVersionSupportWarning' || /NodeVersionSupportWarning/.test(text)) return;
  emitWarning(warning, ...rest);
};

register();
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
await import(pathToFileURL(join(root, 'src', 'cli', 'main.ts')).href);

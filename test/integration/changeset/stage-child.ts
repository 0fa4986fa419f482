// Run by atomic-staging.test.ts as the standby process it kills with SIGKILL: stages one blob into an upper dir
// with an intent, recording the commit durably (as the puller's applied state does) once it is applied and synced.
// Prints one JSON line when done.
import { stageChangeset, type StageIntent } from '../../../src/changeset/index.js';
import { writeFileDurable } from '../../../src/state/atomic-file.js';

const [blob, kind, upperDir, tmpDir, recordedFile, intentJson] = process.argv.slice(2);
if (blob === undefined || (kind !== 'full' && kind !== 'delta') || !upperDir || !tmpDir || !recordedFile || !intentJson) {
  throw new Error('usage: stage-child <blob> <full|delta> <upperDir> <tmpDir> <recordedFile> <intentJson>');
}
const intent = JSON.parse(intentJson) as StageIntent;
const started = Date.now();
const result = await stageChangeset(blob, kind, { upperDir, tmpDir }, {
  intent,
  record: () => writeFileDurable(recordedFile, JSON.stringify(intent)),
});
process.stdout.write(`${JSON.stringify({ ...result, ms: Date.now() - started })}\n`);

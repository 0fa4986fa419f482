// Loaded before every test file (scripts/test.sh --import): the AWS SDK's warning that its 2027 releases need
// Node 22 is printed once per process and would bury the test output; it says nothing about the test.
const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === 'string' ? warning : warning.message;
  const first = rest[0];
  const type = typeof first === 'string' ? first : (first as { type?: string } | undefined)?.type;
  if (type === 'NodeVersionSupportWarning' || text.includes('NodeVersionSupportWarning')) return;
  emitWarning(warning, ...rest);
});

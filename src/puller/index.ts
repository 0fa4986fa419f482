export { chunkIndexDirOf, Puller } from './puller.js';
export type { PullerOptions, PollReport } from './options.js';
export type { ContainerFinalize, ContainerStart, ContainerStatus, FinalizeReport, StartReport, StatusReport } from './reports.js';
export { declaredCommitProblem, openChunkedCommit, type ChunkedCommit } from './chunked-commit.js';
export { downloadValidated, type ValidatedDownloadOptions } from './validated-download.js';

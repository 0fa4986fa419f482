export { chunkIndexDirOf, Puller, type PullerOptions, type PollReport } from './puller.js';
export type { ContainerFinalize, ContainerStart, ContainerStatus, FinalizeReport, StartReport, StatusReport } from './reports.js';

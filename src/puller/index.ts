export { Puller, type PullerOptions, type ContainerReport, type PollReport } from './puller.js';

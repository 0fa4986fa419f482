// metrics: the process's Prometheus registry (prom-client) and what units report into it.
export {
  bucketRequestKinds, commitKinds, failureKinds, Metrics, registerCounter, registerReadGauge, registerStateGauge, type BucketRequestKind, type CommitKind, type FailureKind, type GcObjectKind } from './registry.js';
export { ageSeconds, type ReplicationSide, type ReplicationSource, type ReplicationView } from './replication.js';

// The published reference figures (image-layer sync vs CRIU checkpoint/restore), as quoted in issue 4.

export interface PublishedBySize {
  imageMB: number;
  syncCriuMs: number;
  syncLayerMs: number;
  recoveryCriuMs: number;
  recoveryLayerMs: number;
}

export interface PublishedByCount {
  containers: number;
  avgSyncCriuMs: number;
  avgSyncLayerMs: number;
  recoveryCriuMs: number;
  recoveryLayerMs: number;
}

export const PUBLISHED_BY_SIZE: readonly PublishedBySize[] = [
  { imageMB: 46, syncCriuMs: 409, syncLayerMs: 56, recoveryCriuMs: 410, recoveryLayerMs: 230 },
  { imageMB: 107, syncCriuMs: 985, syncLayerMs: 127, recoveryCriuMs: 903, recoveryLayerMs: 891 },
  { imageMB: 206, syncCriuMs: 1967, syncLayerMs: 320, recoveryCriuMs: 1890, recoveryLayerMs: 2034 },
];

export const PUBLISHED_BY_COUNT: readonly PublishedByCount[] = [
  { containers: 10, avgSyncCriuMs: 1140, avgSyncLayerMs: 130, recoveryCriuMs: 4035, recoveryLayerMs: 2004 },
  { containers: 20, avgSyncCriuMs: 3150, avgSyncLayerMs: 530, recoveryCriuMs: 9043, recoveryLayerMs: 5500 },
  { containers: 40, avgSyncCriuMs: 8980, avgSyncLayerMs: 1120, recoveryCriuMs: 15350, recoveryLayerMs: 12300 },
];

// This process's memory for the status: what an operator (and the chaos soak's leak judge) watches over months.
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import type { ProcessMemory } from './types.js';

interface AfterMajorGc {
  count: number;
  at: number;
  heapMb: number;
}

let afterMajorGc: AfterMajorGc | null = null;
let observer: PerformanceObserver | null = null;

const mb = (x: number): number => Math.round((x / 2 ** 20) * 10) / 10;

/** The kind of a 'gc' performance entry (Node puts it in `detail`). */
function gcKind(e: PerformanceEntry): number | undefined {
  const detail: unknown = 'detail' in e ? e.detail : undefined;
  if (typeof detail !== 'object' || detail === null || !('kind' in detail)) return undefined;
  return typeof detail.kind === 'number' ? detail.kind : undefined;
}

/**
 * Starts noting the heap right after each major GC (mark-compact), once per process. heapUsed at any other moment
 * counts garbage not yet collected — between two major GCs of a busy agent that is up to 100 MB, and V8 may go a
 * minute without one — so only the level a major GC leaves is what the program holds; a leak raises it.
 */
export function watchMajorGc(): void {
  if (observer !== null) return;
  observer = new PerformanceObserver((list) => {
    const majors = list.getEntries().filter((e) => gcKind(e) === constants.NODE_PERFORMANCE_GC_MAJOR);
    if (majors.length === 0) return;
    // Read when the entries are delivered (soon after the GC ends): what was allocated meanwhile is little.
    const m = process.memoryUsage();
    afterMajorGc = { count: (afterMajorGc?.count ?? 0) + majors.length, at: Date.now(), heapMb: mb(m.heapUsed + m.external) };
  });
  observer.observe({ entryTypes: ['gc'] });
}

/** RSS, the V8 heap, external memory (Buffers), and the heap as the last major GC left it (once watched). */
export function processMemory(): ProcessMemory {
  const m = process.memoryUsage();
  const last = afterMajorGc;
  return {
    rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external),
    ...(last === null ? {} : { afterMajorGc: { count: last.count, at: new Date(last.at).toISOString(), heapMb: last.heapMb } }),
  };
}

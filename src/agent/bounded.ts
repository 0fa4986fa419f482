// Waiting for something at most so long, and the message of whatever was thrown: shared by the role machine and
// the restart-policy restore, which both ask the bucket under the agent's decision budget.

/** `p`, or `{ done: false }` after `ms` (p goes on; its rejection is handled). Rejects when p rejects in time. */
export async function within<T>(p: Promise<T>, ms: number): Promise<{ done: true; value: T } | { done: false }> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined);
  try {
    return await Promise.race([
      p.then((value) => ({ done: true as const, value })),
      new Promise<{ done: false }>((resolve) => { timer = setTimeout(() => resolve({ done: false }), Math.max(0, ms)); }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

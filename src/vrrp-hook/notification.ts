// The body notify.sh posts: keepalived's notify arguments TYPE NAME STATE PRIORITY and when the call started,
// parsed once with zod.
import { z } from 'zod';

/** keepalived priorities are 0-255; the script passes them as text, a hand-written client as a number. */
const priority = z.union([
  z.number().int().min(0).max(255),
  z.string().regex(/^\d{1,3}$/, 'expected digits').transform(Number).pipe(z.number().int().min(0).max(255)),
]);

export const notificationSchema = z.strictObject({
  type: z.enum(['INSTANCE', 'GROUP']),
  // Only logged, never used to build a path; bounded and free of control characters so logs stay one line.
  name: z.string().min(1).max(256).regex(/^[^\p{Cc}]*$/u, 'expected no control characters'),
  state: z.enum(['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED']),
  priority,
  // When notify.sh started (nanoseconds since the epoch, as digits): keepalived runs notify scripts
  // asynchronously, so calls can arrive out of order; this orders them. Absent from hand-written calls.
  at: z.string().regex(/^\d{1,20}$/, 'expected 1-20 digits').optional(),
});

export type Notification = z.infer<typeof notificationSchema>;

/** Parses a raw body; returns the reason a client can act on when it is not a notification. */
export function parseNotification(text: string): { ok: true; value: Notification } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    return { ok: false, reason: `malformed JSON: ${(cause as Error).message}` };
  }
  const result = notificationSchema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const reason = result.error.issues
    .map((issue) => {
      const where = issue.path.length > 0 ? `\`${issue.path.join('.')}\`: ` : '';
      return `${where}${issue.message}`;
    })
    .join('; ');
  return { ok: false, reason };
}

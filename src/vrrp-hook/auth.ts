// Bearer-token check. Both sides are hashed first so timingSafeEqual always compares equal-length digests and the
// time taken says nothing about the token's length or how many leading characters matched.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export function tokenMatches(expected: string, given: string): boolean {
  return timingSafeEqual(digest(expected), digest(given));
}

/** Requires `Authorization: Bearer <token>`; with no token configured every request passes (loopback-only, see serveHook). */
export function requireBearer(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (token === undefined) return next();
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    const ok = match?.[1] !== undefined && tokenMatches(token, match[1]);
    if (!ok) {
      const res = new Response(JSON.stringify({ error: header === '' ? 'missing bearer token' : 'invalid bearer token' }), {
        status: 401,
        headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="twinlayer"' },
      });
      throw new HTTPException(401, { res });
    }
    return next();
  };
}

// Reads mount points from a /proc/<pid>/mountinfo file (default our own mount namespace).
import { readFile } from 'node:fs/promises';

// mountinfo escapes space, tab, newline and backslash in paths as \ooo octal.
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** The mount point (5th field) of every line of a mountinfo text. */
export function parseMountPoints(text: string): string[] {
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const point = fields[4];
    if (point !== undefined && fields.length >= 6) points.push(unescapeOctal(point));
  }
  return points;
}

export async function readMountPoints(mountInfoPath = '/proc/self/mountinfo'): Promise<Set<string>> {
  return new Set(parseMountPoints(await readFile(mountInfoPath, 'utf8')));
}

// Loads the JSON fixtures beside this file (captured from dockerd 20.10 on this project's machine kind; the
// snapshotter and native-diff-false ones are edited copies of the real `docker info`; info-containerd-26.json and
// the ctr and mountinfo texts were captured from dockerd 26.1.5 and containerd 1.7.24 of Debian 13 here).
import { readFileSync } from 'node:fs';

export function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')) as unknown;
}

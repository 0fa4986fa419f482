// Watches one container's upper dir with chokidar and reports every path that may have changed (relative to the
// upper dir). chokidar alone misses changes there, so three things complement it:
// - chokidar stats what it reports, following links: a container's absolute symlink points at a host path and is
//   dropped; the raw inotify event still names it.
// - overlayfs turns a whiteout (a char device chokidar took for a file) into a directory by a rename when the
//   container recreates a deleted image dir, and copies whole directories up by rename; chokidar keeps such a path
//   as a file or reads the parent only once a second, and never watches inside.
// - so a directory that appears is added to the watch, and walked again shortly after (its subdirectories added,
//   its path reported so the tracker compares the whole subtree): whatever was written before the new watch took
//   hold is found by that walk, whatever comes after by events.
// - chokidar watches a path by name a moment after it stat'ed it (once it has read the directory), and every later
//   add of the name shares that watch: a directory replaced in between (overlayfs swaps a removed image dir for a
//   whiteout, and a recreated one back, each by a rename) leaves the name watching the whiteout or a deleted
//   directory, for good. So a name an event says was made or renamed into, and that is a directory now, is unwatched
//   and added again: a watch made before that event is dropped, the new one is made after it.
// - only directories are watched: inotify reports every change to an entry of a watched directory (create, write,
//   attributes and xattrs, rename, delete) with its name, which the raw handler notes. chokidar's own watch of every
//   file (an inotify watch, an FSWatcher and its path strings each, about 5 KB of heap) grew with every file the
//   container ever kept: the chaos soak's new file per write made the primary grow for as long as it ran, and 200
//   containers use up inotify's watches. A write through another hard link to a file is noted under that link's
//   name; the scan ships every link of a changed inode together (scan-closure.ts).
// The periodic reconcile in the pusher stays the last line: a missed event delays a change, it never loses it.
import { lstat, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Logger } from '../log/logger.js';

/** When a new directory is walked again after it appeared (ms). */
const FOLLOW_UP_MS = [100, 500, 2000] as const;
/** Directories added per follow-up walk at most; a larger new tree is left to the reconcile. */
const MAX_DIRS_PER_WALK = 10_000;

export interface UpperWatch {
  close(): Promise<void>;
  /** Paths chokidar watches and the listeners it keeps on them (one each when every path was added once). */
  size(): { paths: number; listeners: number };
  /** No follow-up walk is due or running. */
  settled(): boolean;
}

export interface UpperWatchOptions {
  upperDir: string;
  /** A path (relative to the upper dir; '' is the root) that may have changed. */
  onPath: (rel: string) => void;
  /** The watch failed or overflowed: everything must be compared. */
  onLost: (err: unknown) => void;
  log: Logger;
}

export async function watchUpper(opts: UpperWatchOptions): Promise<UpperWatch> {
  const { upperDir: upper, onPath, onLost, log } = opts;
  // chokidar asks first without stats (never ignored then), then with lstat's: all but directories are left out.
  const watcher: FSWatcher = watch(upper, {
    ignoreInitial: true, followSymlinks: false, persistent: true, ignorePermissionErrors: true,
    ignored: (_path: string, stats?: Stats) => stats !== undefined && !stats.isDirectory(),
  });
  const timers = new Set<NodeJS.Timeout>();
  let walks = 0;
  let closed = false;

  // chokidar gives a path it watches one more listener (and closer) at every add, kept until the path goes and
  // called at every event there: a directory that appeared was added up to 8 times (its raw event, chokidar's
  // addDir, the follow-up walks of each), and again at every walk of an ancestor — the primary of the chaos soak
  // held a thousand more every few minutes. Only what chokidar does not watch is added; adds racing before chokidar
  // has stat'ed the path may still each go through (a listener or two more, dropped with the path).
  // `_closers` (path → its watches' closers) is chokidar 5's own (its types declare it); were it to go or change
  // shape, this is null and every add goes through, every unwatch is of the name alone, as before.
  const watches = (): Map<unknown, unknown> | null => {
    const closers: unknown = watcher._closers;
    return closers instanceof Map ? closers : null;
  };
  const add = (dir: string): void => {
    if (watches()?.has(dir) !== true) watcher.add(dir);
  };
  // A name made again may be watched under what it was before (see above): drop that watch and all its listeners,
  // and those of every name under it — they were the old directory's, and chokidar's unwatch closes only the name's
  // own, so a subdirectory made again with it (`mkdir -p`) before the new watch took hold kept its stale watch and
  // the follow-up walk's add skipped it. Then add the name as it is now; the follow-up walks add what is under it
  // (an add lifts the ignore entry unwatch leaves).
  const addAgain = (dir: string): void => {
    const closers = watches();
    if (closers === null) watcher.unwatch(dir);
    else if (closers.has(dir)) {
      // Only a name still watched can have stale watches under it (chokidar drops a removed dir's with its own); a
      // new name skips the walk over every watched path, which a tree of thousands of new dirs would make quadratic.
      const stale = [...closers.keys()].filter((k): k is string => typeof k === 'string' && (k === dir || k.startsWith(dir + '/')));
      if (stale.length > 0) {
        log.debug('watching a directory again: it was made anew under a watched name', { path: dir, names: stale.length });
        watcher.unwatch(stale);
      }
    }
    watcher.add(dir);
  };

  const note = (path: string): void => {
    if (path === upper) onPath('');
    else if (path.startsWith(upper + '/')) onPath(path.slice(upper.length + 1));
  };

  const addSubdirs = async (dir: string): Promise<void> => {
    const queue = [dir];
    for (let n = 0; queue.length > 0 && n < MAX_DIRS_PER_WALK && !closed; n++) {
      const d = queue.shift()!;
      add(d);
      const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory()) queue.push(join(d, e.name));
    }
  };

  /** `anew`: an event said the name was made or renamed into, so a watch it has may hold what was there before. */
  const onDirectoryAppeared = (path: string, anew: boolean): void => {
    if (closed) return;
    log.debug('watching a directory that appeared', { path });
    if (anew) addAgain(path);
    else add(path);
    note(path);
    for (const ms of FOLLOW_UP_MS) {
      const t = setTimeout(() => {
        timers.delete(t);
        if (closed) return;
        walks++;
        void addSubdirs(path).then(() => note(path), (err: unknown) => log.debug('follow-up walk failed', { path, err }))
          .finally(() => { walks--; });
      }, ms);
      timers.add(t);
    }
  };

  const checkDirectory = (path: string): void => {
    void lstat(path).then((st) => {
      if (st.isDirectory()) onDirectoryAppeared(path, true);
    }, () => undefined);
  };

  watcher.on('all', (event, path) => {
    note(path);
    if (event === 'addDir') onDirectoryAppeared(path, false);
    else if (event === 'change') checkDirectory(path);
  });
  watcher.on('raw', (event, name, details) => {
    const watched = (details as { watchedPath?: unknown }).watchedPath;
    if (typeof watched !== 'string' || typeof name !== 'string' || name === '') return;
    note(watched);
    const path = join(watched, name);
    note(path);
    if (event === 'rename') checkDirectory(path);
  });
  watcher.on('error', (err) => onLost(err));
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return {
    async close() {
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await watcher.close();
    },
    size() {
      const all = watches();
      if (all === null) return { paths: 0, listeners: 0 };
      let listeners = 0;
      for (const closers of all.values()) listeners += Array.isArray(closers) ? closers.length : 0;
      return { paths: all.size, listeners };
    },
    settled() {
      return timers.size === 0 && walks === 0;
    },
  };
}

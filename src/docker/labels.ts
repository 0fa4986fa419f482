// The labels twinlayer reads and writes on containers.
/** Containers opt in with `twinlayer.enable=true` (the default protection label). */
export const ENABLE_LABEL = 'twinlayer.enable';
/** Set on every twin twinlayer creates; a same-named container without it is never touched. */
export const TWIN_LABEL = 'twinlayer.twin';
/** Set on every twin: the digest of the spec it was created from, so a changed spec recreates a stopped twin. */
export const SPEC_LABEL = 'twinlayer.spec-digest';
/** Set on every twin: the replication group it belongs to (one engine may hold the twins of several groups). */
export const GROUP_LABEL = 'twinlayer.group';
/** Labels twinlayer writes itself; never captured into a spec (a promoted twin's spec is the user's config). */
export const OWN_LABELS: readonly string[] = [TWIN_LABEL, SPEC_LABEL, GROUP_LABEL];

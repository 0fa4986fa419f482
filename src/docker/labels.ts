// The labels twinlayer reads and writes on containers.
/** Containers opt in with `twinlayer.enable=true` (the default protection label). */
export const ENABLE_LABEL = 'twinlayer.enable';
/** Set on every twin twinlayer creates; a same-named container without it is never touched. */
export const TWIN_LABEL = 'twinlayer.twin';

// The alternative to dist/ that bench/startup.ts measures: src/ run by Node's own type stripping. The sources import
// each other as './x.js' (what tsc emits to); a resolve hook maps those to the .ts files beside them.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, next) {
    if (/^\.\.?\//.test(specifier) && specifier.endsWith('.js') && context.parentURL?.endsWith('.ts') === true) {
      try {
        return next(`${specifier.slice(0, -3)}.ts`, context);
      } catch {
        // not a .ts source: resolve as written
      }
    }
    return next(specifier, context);
  },
});
await import('../../src/cli/main.ts');

// Lint rules: typed rules for promises (every promise awaited or handled) and the seam rule from STYLE.md:
// only src/store/s3*.ts imports the AWS SDK and only src/docker/ imports dockerode. Arrows point down: the lab
// (src/lab: namespaces, private engines) is imported by src/demo only, never by a unit the product runs, and no
// unit the product runs imports the embedded S3 server statically.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const AWS = { group: ['@aws-sdk/*', '@smithy/*'], message: 'Only src/store/s3-*.ts talk to the AWS SDK (and its @smithy parts).' };
const DOCKERODE = { group: ['dockerode'], message: 'Only src/docker/ talks to dockerode.' };
const LAB = { regex: '(^|/)lab/', message: 'Only src/demo imports the lab (src/lab).' };
// s3rver is a devDependency, absent from a production install: the product loads the embedded S3 server only by
// a dynamic import in the command that needs it (src/cli/s3.ts), which says what to install when it is missing.
const S3SERVER = { regex: '(^|/)s3server/|^s3rver', message: 'The embedded S3 server needs s3rver, a devDependency: import it dynamically (src/cli/dev-only.ts).' };
const restrict = (...patterns) => ['error', { patterns }];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'eslint.config.js', 'bin/**', 'bench/lib/strip-types-entry.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': restrict(AWS, DOCKERODE),
    },
  },
  { files: ['src/**/*.ts'], ignores: ['src/lab/**', 'src/demo/**', 'src/s3server/**'], rules: { 'no-restricted-imports': restrict(AWS, DOCKERODE, LAB, S3SERVER) } },
  { files: ['src/s3server/**/*.ts'], rules: { 'no-restricted-imports': restrict(AWS, DOCKERODE, LAB) } },
  { files: ['src/store/s3-*.ts'], rules: { 'no-restricted-imports': restrict(DOCKERODE, LAB, S3SERVER) } },
  { files: ['src/docker/**/*.ts'], rules: { 'no-restricted-imports': restrict({ ...AWS, message: 'docker does not talk to S3.' }, LAB, S3SERVER) } },
  // ICU's collator, set up by the first localeCompare (or Intl.Collator), stays resident for the daemon's life (~3 MB
  // of RSS); the names and paths the product sorts are compared by code unit.
  { files: ['src/**/*.ts'], rules: { 'no-restricted-properties': ['error', { property: 'localeCompare', message: 'Compare by code unit (a < b ? -1 : a > b ? 1 : 0): localeCompare sets up ICU\'s collator, ~3 MB of RSS for the daemon\'s life.' }] } },
  { files: ['test/**/*.ts', 'bench/**/*.ts'], rules: { 'no-restricted-imports': 'off' } },
  { files: ['test/**/*.ts', 'bench/**/*.ts'], rules: { '@typescript-eslint/no-floating-promises': ['error', { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] }] }] } },
);

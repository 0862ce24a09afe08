// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/', '**/dist/', 'coverage/', 'backups/', '.lms/', 'bench/.data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.js', 'packages/*/bin/*.js', 'bench/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Errors are handled in one place per process; a forgotten await would bypass it.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Reading process.env deep inside the code is what the config module exists to prevent.
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'exit',
          message: 'Return an exit code or throw CliError; only entry points exit.',
        },
      ],
      'no-console': 'error',
    },
  },
  {
    // Services and repositories know nothing of HTTP: what they share with the routes (callers,
    // pages, metrics) lives in the API's lib/ or the module itself, so they run the same from a job or a CLI.
    files: ['packages/api/src/modules/**/*.service.ts', 'packages/api/src/modules/**/*.repository.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)http/',
              message:
                'services and repositories must not depend on the HTTP layer; move the shared type to lib/ or the module',
            },
          ],
        },
      ],
    },
  },
  {
    // lmsctl's commands are thin entry points over its domain modules (backup/, postgres/, azure/,
    // health/, queues/, lib/): one command importing another is how command files ended up
    // doubling as the backup library. Tests may use several commands to set a scene.
    files: ['packages/lmsctl/src/commands/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^\\./', message: 'a command must not import a command; move what both need out of commands/' },
          ],
        },
      ],
    },
  },
  {
    files: ['packages/lmsctl/src/commands/*/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\.?/(?!\\.\\./)',
              message: 'a command must not import a command; move what both need out of commands/',
            },
          ],
        },
      ],
    },
  },
  {
    // Plain JavaScript entry points run on Node; TypeScript files get their globals from @types/node.
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['**/*.test.ts', '**/testing/**', 'bench/**', 'scripts/**'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      // HTTP response bodies in tests are untyped JSON by nature.
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      'no-console': 'off',
    },
  },
);

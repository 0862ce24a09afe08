// Module resolution hook for running the repository's sources (registered by lmsctl.js): adds the
// `lms-source` export condition, so `@lms/core` resolves to its TypeScript sources as it does
// under `node --conditions=lms-source`.

/** @type {import('node:module').ResolveHook} */
export const resolve = (specifier, context, nextResolve) =>
  nextResolve(specifier, { ...context, conditions: [...context.conditions, 'lms-source'] });

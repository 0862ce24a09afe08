import { z } from 'zod';

// In a `u` regex a surrogate pair is one code point, so \p{Cs} matches only a lone half.
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The string type of every user-supplied text field. PostgreSQL refuses NUL in text (22021)
 * and lone UTF-16 surrogates in jsonb, so both are refused here, as a 400 naming the field,
 * before they can reach a query. Chain length and trim checks on it like on `z.string()`.
 */
export function safeText() {
  return z
    .string()
    .refine((value) => !value.includes('\u0000'), 'must not contain NUL characters')
    .refine((value) => !LONE_SURROGATE.test(value), 'must be valid Unicode text (it has a lone surrogate)');
}

import { describe, expect, it } from 'vitest';
import { errorMessage } from './errors.js';

describe('errorMessage', () => {
  it('reads the message of an Error, a thrown string, or anything else as JSON', () => {
    expect(errorMessage(new TypeError('bad input'))).toBe('bad input');
    expect(errorMessage('plain text')).toBe('plain text');
    expect(errorMessage({ code: 'E1' })).toBe('{"code":"E1"}');
    expect(errorMessage(undefined)).toBe('unknown error');
  });
});

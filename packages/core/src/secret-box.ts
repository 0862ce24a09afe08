import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Encryption at rest of small secrets kept in the database (webhook signing secrets):
 * AES-256-GCM, a random 12-byte nonce per value, and the row it belongs to as associated data,
 * so a ciphertext copied into another row does not open there.
 *
 * Stored form: `nonce (12) ‖ ciphertext ‖ tag (16)` in one bytea, beside the key id of the key
 * that sealed it. The key id lets a rotation keep two keys and tell which one a row needs.
 */

/** A key ready for use: never printed; `id` is. */
export interface SecretKey {
  /** 16 hex characters naming the key without revealing it (safe to log and store). */
  id: string;
  key: Buffer;
}

export interface SealedSecret {
  keyId: string;
  ciphertext: Buffer;
}

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
// The setting is a key, not a password: HKDF only separates the encryption key from the key id,
// so neither reveals the other and the same setting could serve another purpose later.
const HKDF_INFO = 'lms-secret-box-v1 aes-256-gcm';
const KEY_ID_LABEL = 'lms-secret-box-key-id';

/** The setting's shape: 64 hex characters, as `openssl rand -hex 32` prints. */
export const SECRET_KEY_HEX = /^[0-9a-fA-F]{64}$/;

/** A key whose id is in no setting: names both sides by id, never by value. */
export class UnknownSecretKeyError extends Error {
  constructor(
    readonly keyId: string,
    knownKeyIds: readonly string[],
  ) {
    super(
      `a secret is encrypted with key id ${keyId}, which is not configured (configured: ${knownKeyIds.join(', ') || 'none'})`,
    );
    this.name = 'UnknownSecretKeyError';
  }
}

/** The key id matches but the value does not authenticate: tampered, or moved from another row. */
export class SecretDecryptionError extends Error {
  constructor(keyId: string) {
    super(`a secret encrypted with key id ${keyId} does not decrypt (altered, or not this row's)`);
    this.name = 'SecretDecryptionError';
  }
}

/** Derives the key from a 64-hex-character setting. Throws a TypeError (naming no value) otherwise. */
export function secretKeyFromHex(hex: string): SecretKey {
  if (!SECRET_KEY_HEX.test(hex)) throw new TypeError('a secret key must be 64 hex characters');
  const material = Buffer.from(hex, 'hex');
  const id = createHmac('sha256', material).update(KEY_ID_LABEL).digest().subarray(0, 8).toString('hex');
  const key = Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), HKDF_INFO, 32));
  return { id, key };
}

/** Seals with the current key; opens with any key it holds (current and previous, for rotation). */
export class SecretBox {
  private readonly keys: ReadonlyMap<string, SecretKey>;

  constructor(
    readonly current: SecretKey,
    previous: readonly SecretKey[] = [],
  ) {
    this.keys = new Map([...previous, current].map((key) => [key.id, key]));
  }

  /** Ids of every key this box opens with, current first. */
  get keyIds(): string[] {
    return [this.current.id, ...[...this.keys.keys()].filter((id) => id !== this.current.id)];
  }

  holds(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  /** `context` names what the secret belongs to (e.g. the row); `open` needs the same. */
  seal(plaintext: string, context: string): SealedSecret {
    const nonce = randomBytes(NONCE_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.current.key, nonce, { authTagLength: TAG_LENGTH });
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return { keyId: this.current.id, ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]) };
  }

  open(sealed: SealedSecret, context: string): string {
    const key = this.keys.get(sealed.keyId);
    if (!key) throw new UnknownSecretKeyError(sealed.keyId, this.keyIds);
    const { ciphertext } = sealed;
    if (ciphertext.length < NONCE_LENGTH + TAG_LENGTH) throw new SecretDecryptionError(sealed.keyId);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.key, ciphertext.subarray(0, NONCE_LENGTH), {
        authTagLength: TAG_LENGTH,
      });
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_LENGTH));
      const body = ciphertext.subarray(NONCE_LENGTH, ciphertext.length - TAG_LENGTH);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretDecryptionError(sealed.keyId);
    }
  }
}

/**
 * The box for webhook signing secrets from the configuration: null when WEBHOOK_SECRET_KEY is
 * unset (allowed outside production only; secrets are then stored as before, in plain text).
 */
export function webhookSecretBox(config: {
  WEBHOOK_SECRET_KEY?: string | undefined;
  WEBHOOK_SECRET_KEY_PREVIOUS?: string | undefined;
}): SecretBox | null {
  if (!config.WEBHOOK_SECRET_KEY) return null;
  const previous = config.WEBHOOK_SECRET_KEY_PREVIOUS ? [secretKeyFromHex(config.WEBHOOK_SECRET_KEY_PREVIOUS)] : [];
  return new SecretBox(secretKeyFromHex(config.WEBHOOK_SECRET_KEY), previous);
}

/** The associated data of a webhook subscription's secret: its row. */
export function webhookSecretContext(subscriptionId: string): string {
  return `webhook_subscriptions.secret:${subscriptionId}`;
}

-- 0011 webhook secrets encrypted at rest
-- Signing secrets are stored AES-256-GCM-encrypted with WEBHOOK_SECRET_KEY (nonce ‖ ciphertext ‖
-- tag) beside the id of the key that sealed them. SQL cannot encrypt with the application's key,
-- so existing rows keep their plain-text secret until `lmsctl webhooks encrypt-secrets` encrypts
-- them and clears it; the api and the worker read either form meanwhile.

ALTER TABLE webhook_subscriptions
  ALTER COLUMN secret DROP NOT NULL,
  ADD COLUMN secret_ciphertext bytea,
  ADD COLUMN secret_key_id text,
  ADD CONSTRAINT webhook_subscriptions_secret_stored CHECK (
    (secret_ciphertext IS NULL) = (secret_key_id IS NULL)
    AND (secret IS NOT NULL OR secret_ciphertext IS NOT NULL)
  );

COMMENT ON COLUMN webhook_subscriptions.secret IS
  'Legacy plain-text signing secret; NULL once encrypted (lmsctl webhooks encrypt-secrets).';

-- The rotation command finds rows still in plain text or under another key.
CREATE INDEX webhook_subscriptions_secret_key_id_idx ON webhook_subscriptions (secret_key_id);

-- migrate:down
-- Encrypted secrets cannot be decrypted in SQL: refuse rather than lose them.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM webhook_subscriptions WHERE secret IS NULL) THEN
    RAISE EXCEPTION 'webhook secrets are encrypted; they cannot be returned to plain text in SQL';
  END IF;
END $$;
DROP INDEX webhook_subscriptions_secret_key_id_idx;
ALTER TABLE webhook_subscriptions
  DROP CONSTRAINT webhook_subscriptions_secret_stored,
  DROP COLUMN secret_key_id,
  DROP COLUMN secret_ciphertext,
  ALTER COLUMN secret SET NOT NULL;

-- 0008 email deliveries and enrolment follow-ups
-- What the worker needs to make its jobs idempotent: a record per email idempotency key (one
-- email per key, however often its job runs) and a record per enrolment transition whose
-- follow-ups (jobs, webhook event) were published, so a re-run after a crash publishes nothing twice.

CREATE TABLE email_deliveries (
  -- The producer's key, e.g. `welcome-<userId>`; the email worker sends at most once per key
  -- after it has been marked sent.
  idempotency_key  text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 300),
  template         text NOT NULL,
  recipient        text NOT NULL,
  -- `sending` exists only inside the sender's transaction (it holds the row lock while talking
  -- to the SMTP server); committed rows are `sent` or `failed` (the last attempt failed).
  status           text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
  attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  -- Message-ID the SMTP server accepted, for tracing a complaint back to its job.
  message_id       text,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  sent_at          timestamptz,
  CONSTRAINT email_deliveries_sent_check CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX email_deliveries_created_at_idx ON email_deliveries (created_at);

CREATE TABLE enrollment_follow_ups (
  enrollment_id  uuid NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
  -- The transition whose follow-ups were published: the course completed, the certificate issued.
  kind           text NOT NULL CHECK (kind IN ('course.completed', 'certificate.issued')),
  -- The webhook event published for it (informational; events may be cleaned up).
  event_id       uuid,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (enrollment_id, kind)
);

-- migrate:down
DROP TABLE enrollment_follow_ups;
DROP TABLE email_deliveries;

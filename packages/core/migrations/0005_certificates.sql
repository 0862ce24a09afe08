-- 0005 certificates
-- One certificate per completed enrolment, publicly verifiable by its code.

CREATE TABLE certificates (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  enrollment_id  uuid NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  course_id      uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
  -- Public verification code printed on the certificate.
  code           text NOT NULL CHECK (code ~ '^[A-Z0-9-]{8,64}$'),
  -- Snapshots: the certificate states what was true when it was issued.
  learner_name   text NOT NULL,
  course_title   text NOT NULL,
  issued_at      timestamptz NOT NULL DEFAULT now(),
  -- The rendered PDF lives here or in CERTIFICATE_STORAGE_DIR (then pdf_path is set).
  pdf            bytea,
  pdf_path       text,
  CONSTRAINT certificates_enrollment_id_key UNIQUE (enrollment_id),
  CONSTRAINT certificates_code_key UNIQUE (code)
);
-- A learner's certificates, newest first.
CREATE INDEX certificates_user_id_issued_at_idx ON certificates (user_id, issued_at DESC, id DESC);
CREATE INDEX certificates_course_id_idx ON certificates (course_id);

-- migrate:down
DROP TABLE certificates;

-- 0010 transactional outbox
-- Every job the api or the worker decides to queue is written here, in the same transaction as
-- the change that causes it; the worker's relay moves the rows to BullMQ (with `job_id` as the
-- BullMQ job id, so a row relayed twice is one job) and marks them sent. A Redis outage then
-- delays jobs instead of losing them.

CREATE TABLE outbox (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- A job name of the contract (packages/core/src/jobs.ts) and its payload, valid when written.
  job_name    text NOT NULL CHECK (length(job_name) BETWEEN 1 AND 100),
  payload     jsonb NOT NULL,
  -- Deterministic per cause (jobIdFor): the same cause written twice is one row and one job.
  job_id      text NOT NULL UNIQUE CHECK (length(job_id) BETWEEN 1 AND 300),
  created_at  timestamptz NOT NULL DEFAULT now(),
  sent_at     timestamptz,
  -- Relay attempts that failed (Redis down, a payload the current release refuses) and the last reason.
  attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_error  text
);
-- The relay reads the unsent rows oldest first; sent rows are not in the index.
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
-- The clean-up deletes sent rows past their retention.
CREATE INDEX outbox_sent_at_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- When progress was last recomputed: the reconciliation recomputes the enrolments completed
-- since (a lesson or a passed quiz newer than this). NULL: never recomputed since this migration.
ALTER TABLE enrollments ADD COLUMN progress_updated_at timestamptz;

-- migrate:down
ALTER TABLE enrollments DROP COLUMN progress_updated_at;
DROP TABLE outbox;

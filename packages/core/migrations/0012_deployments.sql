-- 0012 deployments
-- Every `lmsctl deploy` and `deploy rollback` of the stack that runs on this database, as its
-- history file beside the Compose project has it: what ran, who started it, which migrations it
-- applied and how it ended. Written by lmsctl inside the stack once the outcome is known.

CREATE TABLE deployments (
  id                  text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 100),
  kind                text NOT NULL CHECK (kind IN ('deploy', 'rollback')),
  project             text NOT NULL CHECK (length(project) BETWEEN 1 AND 100),
  environment         text NOT NULL CHECK (length(environment) BETWEEN 1 AND 30),
  image               text NOT NULL CHECK (length(image) BETWEEN 1 AND 500),
  -- sha256:… of the image on the host that ran it, whatever its tag points at later.
  image_id            text NOT NULL CHECK (length(image_id) BETWEEN 1 AND 200),
  previous_image      text CHECK (length(previous_image) <= 500),
  started_by          text NOT NULL CHECK (length(started_by) BETWEEN 1 AND 300),
  started_at          timestamptz NOT NULL,
  finished_at         timestamptz NOT NULL CHECK (finished_at >= started_at),
  migrations_applied  text[] NOT NULL DEFAULT '{}',
  outcome             text NOT NULL CHECK (outcome IN ('succeeded', 'rolled-back', 'failed')),
  reason              text CHECK (length(reason) <= 4000)
);
-- Newest first, per stack.
CREATE INDEX deployments_project_started_at_idx ON deployments (project, started_at DESC);

-- migrate:down
DROP TABLE deployments;

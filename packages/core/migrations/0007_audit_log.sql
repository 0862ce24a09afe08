-- 0007 audit log
-- Who did what to which record: account, role and publishing changes, admin actions.

CREATE TABLE audit_log (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- Null for the system (worker, scheduler) or a deleted user.
  actor_id     uuid REFERENCES users (id) ON DELETE SET NULL,
  action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  entity_type  text NOT NULL,
  entity_id    text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  ip           inet,
  request_id   text,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_type, entity_id, created_at DESC);
CREATE INDEX audit_log_actor_id_created_at_idx ON audit_log (actor_id, created_at DESC);
CREATE INDEX audit_log_created_at_idx ON audit_log (created_at);

-- migrate:down
DROP TABLE audit_log;

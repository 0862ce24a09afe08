-- 0006 webhooks
-- Admin-managed subscriptions, the events raised, and a record of every delivery attempt.

CREATE TABLE webhook_subscriptions (
  id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url                   text NOT NULL CHECK (url ~ '^https?://'),
  events                text[] NOT NULL CHECK (cardinality(events) >= 1),
  -- HMAC-SHA256 signing secret, shown to the admin once at creation.
  secret                text NOT NULL,
  description           text NOT NULL DEFAULT '',
  active                boolean NOT NULL DEFAULT true,
  consecutive_failures  integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
  disabled_at           timestamptz,
  disabled_reason       text,
  created_by            uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
-- Fan-out: the active subscriptions to an event type.
CREATE INDEX webhook_subscriptions_events_idx ON webhook_subscriptions USING gin (events) WHERE active;
CREATE INDEX webhook_subscriptions_created_by_idx ON webhook_subscriptions (created_by);

CREATE TRIGGER webhook_subscriptions_set_updated_at BEFORE UPDATE ON webhook_subscriptions
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE webhook_events (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  type        text NOT NULL CHECK (type IN ('enrollment.created', 'lesson.completed', 'course.completed', 'certificate.issued')),
  payload     jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_created_at_idx ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  subscription_id  uuid NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
  event_id         uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
  -- 1 for the first try; one row per attempt, never two for the same attempt.
  attempt          integer NOT NULL CHECK (attempt >= 1),
  status           text NOT NULL CHECK (status IN ('succeeded', 'failed')),
  response_status  integer,
  duration_ms      integer NOT NULL CHECK (duration_ms >= 0),
  error            text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_deliveries_attempt_key UNIQUE (subscription_id, event_id, attempt)
);
-- A subscription's delivery history, newest first (admin API).
CREATE INDEX webhook_deliveries_subscription_id_created_at_idx ON webhook_deliveries (subscription_id, created_at DESC);
CREATE INDEX webhook_deliveries_event_id_idx ON webhook_deliveries (event_id);
-- The clean-up job deletes old deliveries.
CREATE INDEX webhook_deliveries_created_at_idx ON webhook_deliveries (created_at);

-- migrate:down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_events;
DROP TABLE webhook_subscriptions;

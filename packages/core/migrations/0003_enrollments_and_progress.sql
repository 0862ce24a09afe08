-- 0003 enrollments and progress
-- A learner's enrolment in a course and the lessons they completed in it.

CREATE TABLE enrollments (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  course_id         uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
  status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'cancelled')),
  -- Percentage of the course done, recomputed by the progress worker.
  progress          numeric(5, 2) NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
  enrolled_at       timestamptz NOT NULL DEFAULT now(),
  completed_at      timestamptz,
  last_activity_at  timestamptz NOT NULL DEFAULT now(),
  -- Enrolling twice returns the existing enrolment (idempotent).
  CONSTRAINT enrollments_user_id_course_id_key UNIQUE (user_id, course_id),
  CONSTRAINT enrollments_completed_check CHECK ((status = 'completed') = (completed_at IS NOT NULL))
);
-- A learner's enrolments, newest first, paginated by (enrolled_at, id).
CREATE INDEX enrollments_user_id_enrolled_at_idx ON enrollments (user_id, enrolled_at DESC, id DESC);
-- Enrolments per course (instructor reports, cascades).
CREATE INDEX enrollments_course_id_idx ON enrollments (course_id);
-- Inactivity reminders look for active enrolments without recent activity.
CREATE INDEX enrollments_active_last_activity_idx ON enrollments (last_activity_at) WHERE status = 'active';

CREATE TABLE lesson_completions (
  enrollment_id  uuid NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
  lesson_id      uuid NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
  completed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (enrollment_id, lesson_id)
);
CREATE INDEX lesson_completions_lesson_id_idx ON lesson_completions (lesson_id);

-- migrate:down
DROP TABLE lesson_completions;
DROP TABLE enrollments;

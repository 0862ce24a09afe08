-- 0004 quizzes
-- Quizzes of a course, their multiple-choice questions and the learners' scored attempts.

CREATE TABLE quizzes (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
  title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  -- Minimum score (0-100) that passes.
  pass_mark   integer NOT NULL CHECK (pass_mark BETWEEN 0 AND 100),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quizzes_course_id_idx ON quizzes (course_id, created_at);

CREATE TRIGGER quizzes_set_updated_at BEFORE UPDATE ON quizzes
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE quiz_questions (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  quiz_id         uuid NOT NULL REFERENCES quizzes (id) ON DELETE CASCADE,
  position        integer NOT NULL CHECK (position >= 1),
  prompt          text NOT NULL CHECK (length(prompt) BETWEEN 1 AND 2000),
  -- JSON array of option texts; correct_option indexes into it.
  options         jsonb NOT NULL CHECK (jsonb_typeof(options) = 'array' AND jsonb_array_length(options) BETWEEN 2 AND 20),
  correct_option  integer NOT NULL CHECK (correct_option >= 0),
  CONSTRAINT quiz_questions_quiz_id_position_key UNIQUE (quiz_id, position),
  CONSTRAINT quiz_questions_correct_option_in_range CHECK (correct_option < jsonb_array_length(options))
);

CREATE TABLE quiz_attempts (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  quiz_id        uuid NOT NULL REFERENCES quizzes (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  enrollment_id  uuid NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
  -- JSON array of the chosen option per question, in question order.
  answers        jsonb NOT NULL CHECK (jsonb_typeof(answers) = 'array'),
  score          integer NOT NULL CHECK (score BETWEEN 0 AND 100),
  passed         boolean NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
-- A learner's attempts at a quiz, and "has this enrolment passed every quiz" for progress.
CREATE INDEX quiz_attempts_user_id_quiz_id_idx ON quiz_attempts (user_id, quiz_id, created_at DESC);
CREATE INDEX quiz_attempts_enrollment_id_quiz_id_idx ON quiz_attempts (enrollment_id, quiz_id) WHERE passed;
CREATE INDEX quiz_attempts_quiz_id_idx ON quiz_attempts (quiz_id);

-- migrate:down
DROP TABLE quiz_attempts;
DROP TABLE quiz_questions;
DROP TABLE quizzes;

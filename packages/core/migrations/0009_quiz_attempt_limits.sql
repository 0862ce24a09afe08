-- 0009 quiz attempt limits
-- A score that counts correct answers is an oracle: with unlimited attempts a learner changes one
-- answer at a time and reads the key off the score. Each quiz now bounds its attempts per
-- enrolment, may require a pause between them, and says when a learner may see which answers
-- were right. Existing quizzes take the defaults (3 attempts, no pause, review after the last
-- attempt); a learner who already used 3 or more attempts at one of them has none left.

ALTER TABLE quizzes
  ADD COLUMN max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
  -- Seconds a learner waits after an attempt before the next one (0: no wait); at most a week.
  ADD COLUMN cooldown_seconds integer NOT NULL DEFAULT 0 CHECK (cooldown_seconds BETWEEN 0 AND 604800),
  -- When an attempt's result shows which answers were right: never; once the learner passed;
  -- once the learner passed or has no attempts left.
  ADD COLUMN reveal_answers   text NOT NULL DEFAULT 'after_last_attempt'
    CHECK (reveal_answers IN ('never', 'after_pass', 'after_last_attempt'));

-- Counting an enrolment's attempts at a quiz, and its latest one for the cooldown.
CREATE INDEX quiz_attempts_enrollment_id_quiz_id_created_at_idx
  ON quiz_attempts (enrollment_id, quiz_id, created_at DESC);

-- migrate:down
DROP INDEX quiz_attempts_enrollment_id_quiz_id_created_at_idx;
ALTER TABLE quizzes
  DROP COLUMN reveal_answers,
  DROP COLUMN cooldown_seconds,
  DROP COLUMN max_attempts;

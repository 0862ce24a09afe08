-- 0002 courses and lessons
-- Courses owned by an instructor (draft until published) and their ordered lessons.

CREATE TABLE courses (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  instructor_id  uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  title          text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description    text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
  status         text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published', 'archived')),
  published_at   timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT courses_published_at_check CHECK (status <> 'published' OR published_at IS NOT NULL)
);
-- Catalogue: published courses, newest first, paginated by (created_at, id).
CREATE INDEX courses_status_created_at_id_idx ON courses (status, created_at DESC, id DESC);
-- An instructor's own courses.
CREATE INDEX courses_instructor_id_created_at_idx ON courses (instructor_id, created_at DESC, id DESC);

CREATE TRIGGER courses_set_updated_at BEFORE UPDATE ON courses
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE lessons (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  course_id   uuid NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
  position    integer NOT NULL CHECK (position >= 1),
  title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  body        text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  -- Deferrable so that lessons can be reordered inside one transaction.
  CONSTRAINT lessons_course_id_position_key UNIQUE (course_id, position) DEFERRABLE INITIALLY IMMEDIATE
);

CREATE TRIGGER lessons_set_updated_at BEFORE UPDATE ON lessons
  FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- migrate:down
DROP TABLE lessons;
DROP TABLE courses;

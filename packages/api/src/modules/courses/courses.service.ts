import { ConflictError, ForbiddenError, NotFoundError } from '@lms/core';
import { decodeCursor, toPage, type Page } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import { JsonText } from '../../lib/json-text.js';
import type { AuditRepository } from '../audit/audit.repository.js';
import type { CourseCache } from './courses.cache.js';
import { presentCourse, presentLesson, type PresentedCourse } from './courses.presenter.js';
import type { CourseRow, CoursesRepository } from './courses.repository.js';
import type { CreateCourseBody, CreateLessonBody, ListCoursesQuery, UpdateCourseBody } from './courses.schema.js';

/** May this user change this course? Its instructor and admins may. */
export function canManage(user: AuthUser | null, course: Pick<CourseRow, 'instructor_id'>): boolean {
  return user !== null && (user.role === 'admin' || user.id === course.instructor_id);
}

/**
 * Courses and lessons: instructors own and publish theirs, admins manage all, and everyone sees
 * published ones. A draft is invisible (404) to anyone who may not manage it.
 */
export class CoursesService {
  constructor(
    private readonly courses: CoursesRepository,
    private readonly cache: CourseCache,
    private readonly audit: AuditRepository,
  ) {}

  async create(user: AuthUser, body: CreateCourseBody): Promise<PresentedCourse> {
    const row = await this.courses.insert({ instructorId: user.id, title: body.title, description: body.description });
    return presentCourse(row);
  }

  /** Lists courses; the public catalogue comes from the cache, ready-serialised. */
  async list(user: AuthUser | null, query: ListCoursesQuery): Promise<Page<PresentedCourse> | JsonText> {
    const after = decodeCursor(query.cursor);
    if (query.mine === 'true') {
      if (!user) throw new ForbiddenError('sign in to list your own courses');
      const rows = await this.courses.listOwned(user.role === 'admin' ? null : user.id, query.limit, after, user.id);
      return toPage(rows, query.limit, presentCourse);
    }
    const page = await this.cache.catalogue(query.limit, query.cursor, async () =>
      toPage(await this.courses.listPublished(query.limit, after), query.limit, presentCourse),
    );
    return new JsonText(page.json);
  }

  /** A course visible to this user, ready-serialised (a cache hit is sent as it is stored). */
  async get(user: AuthUser | null, id: string): Promise<JsonText> {
    const cached = await this.cache.course(id, async () => {
      const row = await this.courses.findById(id);
      return row ? presentCourse(row) : null;
    });
    const course = cached?.value;
    if (!course || (course.status !== 'published' && !canManage(user, { instructor_id: course.instructorId }))) {
      throw new NotFoundError('no such course');
    }
    return new JsonText(cached.json);
  }

  async update(user: AuthUser, id: string, body: UpdateCourseBody): Promise<PresentedCourse> {
    await this.managed(user, id);
    const row = await this.courses.update(id, body);
    if (!row) throw new NotFoundError('no such course');
    await this.cache.invalidate(id);
    return presentCourse(row);
  }

  async publish(user: AuthUser, id: string, requestId?: string): Promise<PresentedCourse> {
    const course = await this.managed(user, id);
    if ((await this.courses.countLessons(id)) === 0)
      throw new ConflictError('add at least one lesson before publishing');
    const row = await this.courses.publish(id);
    if (!row) throw new NotFoundError('no such course');
    await this.cache.invalidate(id);
    if (course.status !== 'published') {
      await this.audit.record({
        actorId: user.id,
        action: 'course.published',
        entityType: 'course',
        entityId: id,
        requestId,
      });
    }
    return presentCourse(row);
  }

  /** Deletes a course; an instructor only while nobody is enrolled (admins always, with the enrolments). */
  async delete(user: AuthUser, id: string, requestId?: string): Promise<void> {
    const course = await this.managed(user, id);
    const enrolled = await this.courses.countEnrollments(id);
    if (enrolled > 0 && user.role !== 'admin') {
      throw new ConflictError(`${enrolled} learner(s) are enrolled; only an admin can delete this course`);
    }
    await this.courses.delete(id);
    await this.cache.invalidate(id);
    await this.audit.record({
      actorId: user.id,
      action: 'course.deleted',
      entityType: 'course',
      entityId: id,
      details: { title: course.title, enrollmentsDeleted: enrolled },
      requestId,
    });
  }

  async lessons(user: AuthUser | null, courseId: string) {
    const course = await this.courses.findById(courseId);
    const manager = course !== null && canManage(user, course);
    if (!course || (course.status !== 'published' && !manager)) throw new NotFoundError('no such course');
    const studies = manager || (user !== null && (await this.courses.isEnrolled(courseId, user.id)));
    return {
      items: (await this.courses.lessons(courseId)).map((row) => presentLesson(row, studies)),
      nextCursor: null,
    };
  }

  async addLesson(user: AuthUser, courseId: string, body: CreateLessonBody) {
    await this.managed(user, courseId);
    return presentLesson(await this.courses.appendLesson(courseId, body), true);
  }

  /** The course, if this user may change it: 404 when invisible to them, 403 when visible but not theirs. */
  private async managed(user: AuthUser, id: string): Promise<CourseRow> {
    const course = await this.courses.findById(id);
    if (!course) throw new NotFoundError('no such course');
    if (!canManage(user, course)) {
      if (course.status !== 'published') throw new NotFoundError('no such course');
      throw new ForbiddenError('only the course instructor or an admin may change this course');
    }
    return course;
  }
}

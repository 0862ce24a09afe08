import type { QuestionRow, QuizRow, QuizSummaryRow } from './quizzes.repository.js';

/** A quiz; the correct options only for those who manage the course. */
export function presentQuiz(quiz: QuizRow, questions: QuestionRow[], withAnswers: boolean) {
  return {
    id: quiz.id,
    courseId: quiz.course_id,
    title: quiz.title,
    passMark: quiz.pass_mark,
    questions: questions.map((q) => ({
      id: q.id,
      position: q.position,
      prompt: q.prompt,
      options: q.options,
      ...(withAnswers ? { correctOption: q.correct_option } : {}),
    })),
  };
}

export function presentQuizSummary(row: QuizSummaryRow) {
  return {
    id: row.id,
    courseId: row.course_id,
    title: row.title,
    passMark: row.pass_mark,
    questionCount: row.questions,
  };
}

import type { QuestionRow, QuizRow, QuizSummaryRow } from './quizzes.repository.js';

/** A quiz; the correct options only for those who manage the course. */
export function presentQuiz(quiz: QuizRow, questions: QuestionRow[], withAnswers: boolean) {
  return {
    id: quiz.id,
    courseId: quiz.course_id,
    title: quiz.title,
    passMark: quiz.pass_mark,
    maxAttempts: quiz.max_attempts,
    cooldownSeconds: quiz.cooldown_seconds,
    revealAnswers: quiz.reveal_answers,
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
    maxAttempts: row.max_attempts,
    cooldownSeconds: row.cooldown_seconds,
    revealAnswers: row.reveal_answers,
    questionCount: row.questions,
  };
}

/**
 * An attempt's result: the score, and which answers were right only with `review` (the service
 * decides when the quiz's revealAnswers allows it).
 */
export function presentAttempt(attempt: {
  id: string;
  quiz: QuizRow;
  score: number;
  passed: boolean;
  createdAt: Date;
  attemptsUsed: number;
  nextAttemptAt: Date | null;
  review: { questions: QuestionRow[]; answers: number[] } | null;
}) {
  const { review } = attempt;
  return {
    id: attempt.id,
    quizId: attempt.quiz.id,
    score: attempt.score,
    passed: attempt.passed,
    createdAt: attempt.createdAt.toISOString(),
    attemptsUsed: attempt.attemptsUsed,
    attemptsRemaining: Math.max(0, attempt.quiz.max_attempts - attempt.attemptsUsed),
    nextAttemptAt: attempt.nextAttemptAt?.toISOString() ?? null,
    // answers has one entry per question: the service refused the attempt otherwise.
    review: review
      ? review.questions.map((question, index) => ({
          questionId: question.id,
          chosenOption: review.answers[index]!,
          correctOption: question.correct_option,
          correct: question.correct_option === review.answers[index],
        }))
      : null,
  };
}

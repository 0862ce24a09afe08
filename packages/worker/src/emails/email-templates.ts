import type { EmailTemplate } from '@lms/core';
import { appUrl as baseUrl, certificateVerifyUrl } from '../links.js';

/** A rendered email: the same content as plain text and as HTML. */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export interface TemplateContext {
  /** APP_DOMAIN, for links. */
  appDomain: string;
}

type Props = Record<string, unknown>;

/**
 * A prop as text. Producers send what they know; a missing or odd value falls back to neutral
 * wording rather than failing the email (the key facts are in the subject and the link).
 */
function prop(props: Props, key: string): string | undefined {
  const value = props[key];
  if (typeof value === 'string' && value.trim() !== '') return value.trim();
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

interface Body {
  subject: string;
  greeting: string;
  paragraphs: string[];
  link?: { label: string; url: string };
}

function render(body: Body): RenderedEmail {
  const text = [
    body.greeting,
    '',
    ...body.paragraphs.flatMap((paragraph) => [paragraph, '']),
    ...(body.link ? [`${body.link.label}: ${body.link.url}`, ''] : []),
    '— The LMS team',
    '',
  ].join('\n');
  const html = [
    '<!doctype html>',
    '<html><body style="font-family: sans-serif; line-height: 1.5">',
    `<p>${escapeHtml(body.greeting)}</p>`,
    ...body.paragraphs.map((paragraph) => `<p>${escapeHtml(paragraph)}</p>`),
    ...(body.link ? [`<p><a href="${escapeHtml(body.link.url)}">${escapeHtml(body.link.label)}</a></p>`] : []),
    '<p>— The LMS team</p>',
    '</body></html>',
    '',
  ].join('\n');
  return { subject: body.subject, text, html };
}

const templates: { [T in EmailTemplate]: (props: Props, context: { appUrl: string; appDomain: string }) => Body } = {
  welcome: (props, { appUrl }) => ({
    subject: 'Welcome to the LMS',
    greeting: `Hello ${prop(props, 'name') ?? 'there'},`,
    paragraphs: ['Your account is ready. Browse the catalogue and enrol in your first course.'],
    link: { label: 'Browse the courses', url: `${appUrl}/courses` },
  }),
  'enrollment-confirmation': (props, { appUrl }) => {
    const course = prop(props, 'courseTitle');
    return {
      subject: course ? `You are enrolled in ${course}` : 'Your enrolment is confirmed',
      greeting: `Hello ${prop(props, 'name') ?? 'there'},`,
      paragraphs: [
        course ? `You are now enrolled in "${course}".` : 'Your enrolment is confirmed.',
        'Start with the first lesson whenever you are ready.',
      ],
      link: { label: 'Go to your courses', url: `${appUrl}/enrollments` },
    };
  },
  'course-completed': (props, { appUrl }) => {
    const course = prop(props, 'courseTitle');
    return {
      subject: course ? `You completed ${course}` : 'You completed your course',
      greeting: `Congratulations ${prop(props, 'name') ?? ''}!`.replace(' !', '!'),
      paragraphs: [
        course ? `You have completed every lesson and quiz of "${course}".` : 'You have completed your course.',
        'Your certificate is being prepared; we will email you as soon as it is ready.',
      ],
      link: { label: 'See your progress', url: `${appUrl}/enrollments` },
    };
  },
  'certificate-issued': (props, { appUrl, appDomain }) => {
    const course = prop(props, 'courseTitle');
    const code = prop(props, 'code');
    return {
      subject: course ? `Your certificate for ${course}` : 'Your certificate is ready',
      greeting: `Hello ${prop(props, 'name') ?? 'there'},`,
      paragraphs: [
        course
          ? `Your certificate of completion for "${course}" is ready.`
          : 'Your certificate of completion is ready.',
        ...(code ? [`Verification code: ${code}. Anyone can check it at the link below.`] : []),
      ],
      link: code
        ? { label: 'Verify the certificate', url: certificateVerifyUrl(appDomain, code) }
        : { label: 'Your certificates', url: `${appUrl}/certificates` },
    };
  },
  'inactivity-reminder': (props, { appUrl }) => {
    const course = prop(props, 'courseTitle');
    const days = prop(props, 'days');
    return {
      subject: course ? `Pick up where you left off in ${course}` : 'Pick up where you left off',
      greeting: `Hello ${prop(props, 'name') ?? 'there'},`,
      paragraphs: [
        `${days ? `It has been ${days} days` : 'It has been a while'} since you last worked on ${course ? `"${course}"` : 'your course'}.`,
        'A few minutes a day is all it takes to keep going.',
      ],
      link: { label: 'Continue learning', url: `${appUrl}/enrollments` },
    };
  },
};

/** Renders `template` with the producer's `props` as text and HTML (props are escaped in HTML). */
export function renderEmail(template: EmailTemplate, props: Props, context: TemplateContext): RenderedEmail {
  return render(templates[template](props, { appUrl: baseUrl(context.appDomain), appDomain: context.appDomain }));
}

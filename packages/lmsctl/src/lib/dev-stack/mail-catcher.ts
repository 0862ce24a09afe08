import type { SMTPServer as MailCatcherServer } from 'smtp-server';
import type { Output } from '../../output.js';
import { portAnswers } from './port-probes.js';

/**
 * A tiny mail catcher on SMTP_URL's port when that is local and nothing listens there; it prints
 * the recipients and subject of each message the worker sends as `[mail]`. Returns how to stop
 * it, or null when none was started (the server of SMTP_URL runs, or smtp-server is missing).
 */
export async function startMailCatcher(
  smtpUrl: string,
  out: Output,
  say: (line: string) => void,
): Promise<(() => Promise<void>) | null> {
  const smtp = new URL(smtpUrl);
  const host = smtp.hostname || '127.0.0.1';
  const port = Number(smtp.port || 25);
  if (!['127.0.0.1', 'localhost'].includes(host) || (await portAnswers(host, port))) return null;
  let SMTPServer: typeof MailCatcherServer;
  try {
    ({ SMTPServer } = await import('smtp-server'));
  } catch {
    say(`nothing listens on ${host}:${port} for mail; e-mails will be retried until a mail catcher runs there`);
    return null;
  }
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let text = '';
      stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
      stream.on('end', () => {
        const subject = /^Subject: (.*)$/m.exec(text)?.[1] ?? '(no subject)';
        const to = session.envelope.rcptTo.map((address) => address.address).join(', ');
        out.streams.stderr.write(`${out.errStyle.yellow('[mail]'.padEnd(8))} to ${to}: ${subject}\n`);
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  say(`mail catcher on ${host}:${port} (messages are printed as [mail])`);
  return () => new Promise((resolve) => server.close(() => resolve()));
}

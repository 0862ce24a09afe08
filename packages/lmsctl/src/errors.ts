import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** lmsctl's exit codes (DESIGN.md). */
export const ExitCode = {
  ok: 0,
  /** The operation failed. */
  failed: 1,
  /** Usage error, or a confirmation refused or impossible. */
  usage: 2,
  /** A verification failed: bad checksum, drill mismatch, edited migration. */
  verification: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * An error meant for the person at the terminal: one line that says what happened, an
 * optional hint that says what to do, and the exit code. Thrown anywhere in lmsctl; turned
 * into output and an exit code only in `index.ts`.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    readonly hint?: string,
    /** The command already wrote its result (e.g. a failed drill's report): no JSON error document. */
    readonly resultPrinted = false,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string, hint?: string) => new CliError(ExitCode.usage, message, hint);

/**
 * What Node attaches to a failed system call (fs, net, child_process): `code` such as ENOSPC,
 * the call, and the path, destination or address it was about. Which fields are set depends on
 * the call: a write through a stream has neither path nor address.
 */
export interface SystemError {
  code: string;
  syscall?: string;
  path?: string;
  dest?: string;
  address?: string;
  port?: number;
  hostname?: string;
}

function isSystemError(value: unknown): value is SystemError & Error {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as { code?: unknown; syscall?: unknown; errno?: unknown };
  return (
    typeof candidate.code === 'string' &&
    /^E[A-Z0-9_]+$/.test(candidate.code) &&
    (typeof candidate.syscall === 'string' || typeof candidate.errno === 'number')
  );
}

/** The system error `error` is, or wraps as its `cause` (at most a few levels down). */
export function findSystemError(error: unknown): (SystemError & Error) | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if (isSystemError(current)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Names the file or folder a system error was about when Node could not: a write through a
 * stream fails with ENOSPC but no path. Returns `error`, for `throw withPath(error, file)`.
 */
export function withPath(error: unknown, file: string): unknown {
  const system = findSystemError(error);
  if (system && system.path === undefined) system.path = file;
  return error;
}

/** What the failed call was doing, in words: "create the folder", "delete", "list". */
function actionOf(syscall: string | undefined): string {
  switch (syscall) {
    case 'mkdir':
      return 'create the folder';
    case 'scandir':
    case 'opendir':
      return 'list the folder';
    case 'rmdir':
      return 'delete the folder';
    case 'unlink':
      return 'delete';
    case 'rename':
      return 'move';
    case 'link':
    case 'symlink':
      return 'link';
    case 'copyfile':
      return 'copy';
    case 'read':
    case 'stat':
    case 'lstat':
      return 'read';
    case 'write':
      return 'write';
    case 'chmod':
    case 'fchmod':
      return 'change the mode of';
    case 'chown':
    case 'fchown':
      return 'change the owner of';
    default:
      return 'open';
  }
}

function exists(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch {
    return false;
  }
}

function currentUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/** What to do about a full disk, wherever lmsctl writes. */
export const NO_SPACE_HINT =
  'free space on that disk, or write to a bigger one (backups: --dir or LMS_BACKUP_DIR; bundles: --out)';

/** One line saying what failed and a hint saying what to do, for the system errors an operator can fix. */
export interface Described {
  message: string;
  hint: string;
}

/**
 * Turns a system error into words an operator can act on, naming the path or port; undefined
 * for codes that are not about this machine's files, ports or network (those stay as they are).
 */
export function describeSystemError(error: SystemError): Described | undefined {
  const file = error.path;
  const target = file && error.dest ? `${file} to ${error.dest}` : file;
  const onPath = target ? ` ${target}` : '';
  const endpoint = error.address ? `${error.address}${error.port !== undefined ? `:${error.port}` : ''}` : undefined;
  switch (error.code) {
    case 'ENOSPC':
      return { message: `no space left on device${target ? ` writing ${target}` : ''}`, hint: NO_SPACE_HINT };
    case 'EDQUOT':
      return { message: `disk quota exceeded${target ? ` writing ${target}` : ''}`, hint: NO_SPACE_HINT };
    case 'EACCES':
    case 'EPERM': {
      const denied = error.code === 'EACCES' ? 'permission denied' : 'operation not permitted';
      if (error.syscall === 'listen' || error.syscall === 'bind') {
        return {
          message: `${denied} listening on port ${error.port ?? '?'}`,
          hint: 'ports below 1024 need privileges: choose a port above 1023',
        };
      }
      if (error.syscall?.startsWith('spawn')) {
        return {
          message: `${denied}: cannot run ${file ?? error.syscall.slice('spawn '.length)}`,
          hint: 'make it executable for this user, or point to another copy',
        };
      }
      // A file that does not exist was being created: the folder is what refuses.
      const blame = file && !exists(file) ? path.dirname(file) : file;
      return {
        message: `${denied}: cannot ${actionOf(error.syscall)}${onPath}`,
        hint: `check the owner${error.code === 'EPERM' ? ', permissions and attributes (e.g. immutable)' : ' and permissions'} of ${blame ?? 'the file'}; lmsctl runs as ${currentUser()}`,
      };
    }
    case 'ENOENT': {
      if (error.syscall?.startsWith('spawn')) {
        const program = file ?? error.syscall.slice('spawn '.length);
        return { message: `${program} not found`, hint: `install ${program}, or put the folder that holds it on PATH` };
      }
      if (!file) return undefined;
      const folder = path.dirname(file);
      if (!exists(folder)) {
        return { message: `folder ${folder} does not exist`, hint: 'create it first, or choose another path' };
      }
      return { message: `${file} does not exist`, hint: 'check the path' };
    }
    case 'ENOTDIR':
      return { message: `a part of ${file ?? 'the path'} is a file, not a folder`, hint: 'check the path' };
    case 'EISDIR':
      return { message: `${file ?? 'the path'} is a folder, not a file`, hint: 'name a file' };
    case 'EEXIST':
      return { message: `${file ?? 'the file'} already exists`, hint: 'choose another name, or remove it first' };
    case 'EROFS':
      return {
        message: `read-only file system: cannot ${actionOf(error.syscall)}${onPath}`,
        hint: 'write somewhere else, or remount that file system read-write',
      };
    case 'EMFILE':
    case 'ENFILE':
      return {
        message: `too many open files${file ? ` (opening ${file})` : ''}`,
        hint: 'raise the limit of open files (ulimit -n) and run again',
      };
    case 'ENAMETOOLONG':
      return { message: `the name is too long:${onPath}`, hint: 'choose a shorter path' };
    case 'EXDEV':
      return { message: `cannot move${onPath}: the two are on different file systems`, hint: 'keep both on one disk' };
    case 'ENOTEMPTY':
      return { message: `${file ?? 'the folder'} is not empty`, hint: 'empty it first, or choose another folder' };
    case 'EBUSY':
      return { message: `${file ?? 'the resource'} is busy`, hint: 'stop what uses it, then run again' };
    case 'EIO':
      return {
        message: `input/output error${target ? ` on ${target}` : ''}`,
        hint: 'the disk or network share failed: check the system log',
      };
    case 'EADDRINUSE':
      return {
        message: `port ${error.port ?? '?'} is already in use${error.address ? ` (on ${error.address})` : ''}`,
        hint: 'stop what listens there, or choose another port',
      };
    case 'EADDRNOTAVAIL':
      return {
        message: `cannot listen on ${endpoint ?? 'that address'}: not an address of this machine`,
        hint: 'choose an address this machine has, e.g. 127.0.0.1',
      };
    case 'ECONNREFUSED':
      return {
        message: `connection refused by ${endpoint ?? 'the server'}`,
        hint: 'check that the service runs there and the URL is right',
      };
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return {
        message: `${endpoint ?? 'the server'} cannot be reached (${error.code})`,
        hint: 'check the address, the network and firewalls',
      };
    case 'ECONNRESET':
      return {
        message: `${endpoint ?? 'the server'} closed the connection`,
        hint: 'run again; if it persists, check the server',
      };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return {
        message: `host ${error.hostname ?? endpoint ?? '?'} not found`,
        hint: 'check the host name in the URL and DNS',
      };
    default:
      return undefined;
  }
}

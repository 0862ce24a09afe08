import { mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Writes a certificate PDF into `dir` as `<enrollmentId>.pdf`, atomically (temporary file,
 * fsync, rename): a reader never sees half a file, and a run repeated after a crash replaces
 * the file instead of leaving an orphan beside it. Returns the file name, which is what
 * `certificates.pdf_path` holds (relative to CERTIFICATE_STORAGE_DIR, so the folder can move).
 */
export async function writeCertificateFile(dir: string, enrollmentId: string, pdf: Buffer): Promise<string> {
  await mkdir(dir, { recursive: true });
  const name = `${enrollmentId}.pdf`;
  const temporary = path.join(dir, `.${name}.${process.pid}.tmp`);
  try {
    const handle = await open(temporary, 'w', 0o640);
    try {
      await handle.writeFile(pdf);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path.join(dir, name));
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return name;
}

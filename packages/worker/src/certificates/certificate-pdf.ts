import PDFDocument from 'pdfkit';

export interface CertificateContent {
  learnerName: string;
  courseTitle: string;
  issuedAt: Date;
  code: string;
  /** Public page that confirms the certificate by its code. */
  verifyUrl: string;
}

function formatDate(date: Date): string {
  return new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'long', year: 'numeric', timeZone: 'UTC' }).format(
    date,
  );
}

/**
 * Renders the certificate of completion (A4 landscape, built-in fonts so no font files are
 * needed): learner, course, date of issue and the verification code with its URL. The code is
 * also in the PDF's keywords, where tools (and the tests) can read it without parsing text.
 */
export function renderCertificatePdf(content: CertificateContent): Promise<Buffer> {
  const doc = new PDFDocument({
    size: 'A4',
    layout: 'landscape',
    margin: 56,
    info: {
      Title: `Certificate of completion: ${content.courseTitle}`,
      Author: 'LMS',
      Subject: `${content.learnerName} completed ${content.courseTitle}`,
      Keywords: content.code,
      CreationDate: content.issuedAt,
    },
  });
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (chunk: Buffer) => chunks.push(chunk));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  const width = doc.page.width - 112;
  doc
    .lineWidth(3)
    .rect(28, 28, doc.page.width - 56, doc.page.height - 56)
    .stroke('#1f3a5f');
  doc.moveDown(2);
  doc
    .font('Helvetica-Bold')
    .fontSize(34)
    .fillColor('#1f3a5f')
    .text('Certificate of Completion', { align: 'center', width });
  doc.moveDown(1.2);
  doc.font('Helvetica').fontSize(16).fillColor('#333333').text('This certifies that', { align: 'center', width });
  doc.moveDown(0.6);
  doc.font('Helvetica-Bold').fontSize(28).fillColor('#000000').text(content.learnerName, { align: 'center', width });
  doc.moveDown(0.6);
  doc
    .font('Helvetica')
    .fontSize(16)
    .fillColor('#333333')
    .text('has successfully completed the course', { align: 'center', width });
  doc.moveDown(0.6);
  doc.font('Helvetica-Bold').fontSize(22).fillColor('#000000').text(content.courseTitle, { align: 'center', width });
  doc.moveDown(1.2);
  doc
    .font('Helvetica')
    .fontSize(14)
    .fillColor('#333333')
    .text(`Issued on ${formatDate(content.issuedAt)}`, {
      align: 'center',
      width,
    });
  doc.moveDown(2);
  doc.fontSize(11).text(`Verification code: ${content.code}`, { align: 'center', width });
  doc.fillColor('#1f3a5f').text(content.verifyUrl, { align: 'center', width, link: content.verifyUrl });
  doc.end();
  return done;
}

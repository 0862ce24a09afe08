/**
 * Reads a string entry of a PDF's Info dictionary (Title, Subject, Keywords, …) from the file
 * pdfkit writes: the dictionary references indirect string objects such as `19 0 obj (text)`.
 */
export function pdfInfoEntry(pdf: Buffer, key: string): string | undefined {
  const text = pdf.toString('latin1');
  const reference = new RegExp(`/${key} (\\d+) 0 R`).exec(text);
  const direct = new RegExp(`/${key} \\(([^)]*)\\)`).exec(text);
  if (!reference) return direct?.[1];
  const object = new RegExp(`(?:^|\\n)${reference[1]} 0 obj\\s*\\(([^)]*)\\)`).exec(text);
  return object?.[1];
}

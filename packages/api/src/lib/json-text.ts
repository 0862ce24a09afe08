/** A response body that is already JSON text (a cache hit): sent without serialising it again. */
export class JsonText {
  constructor(readonly text: string) {}
}

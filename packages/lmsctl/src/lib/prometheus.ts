/**
 * One instant query against the Prometheus HTTP API: the first sample's value, null when the
 * result is empty or NaN (no traffic), an error when Prometheus does not answer or refuses.
 */
export async function queryScalar(base: string, query: string): Promise<number | null> {
  const url = `${base.replace(/\/+$/, '')}/api/v1/query?query=${encodeURIComponent(query)}`;
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`Prometheus answered ${response.status}`);
  const body = (await response.json()) as { status: string; data?: { result?: Array<{ value: [number, string] }> } };
  if (body.status !== 'success') throw new Error('Prometheus query failed');
  const value = body.data?.result?.[0]?.value?.[1];
  return value === undefined || value === 'NaN' ? null : Number(value);
}

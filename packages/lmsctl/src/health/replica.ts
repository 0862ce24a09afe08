import type pg from 'pg';
import { connectClient, describePostgresUrl, errorMessage, maskUrl, measureReplica } from '@lms/core';
import type { CommandContext } from '../context.js';
import type { StatusItem } from './probes.js';

const RUNBOOK = 'docs/runbooks/replica-lag.md';

/**
 * The read replica's line of `status` (none without DATABASE_READ_URL): its lag against the
 * primary, measured as the API measures it. A replica that lags, does not answer or is no
 * standby is a warning, not a failure: the API serves its reads from the primary meanwhile.
 */
export async function probeReplica(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.config.DATABASE_READ_URL;
  if (!url) return [];
  const { host, port } = describePostgresUrl(url);
  const server = `${host}:${port}`;
  const maxLagSeconds = ctx.config.REPLICA_MAX_LAG_SECONDS;
  let replica: pg.Client;
  try {
    replica = await connectClient(url, { applicationName: 'lmsctl status' });
  } catch (error) {
    return [
      {
        name: 'replica',
        state: 'warn',
        detail: `${maskUrl(errorMessage(error))}: the API reads from the primary meanwhile (${RUNBOOK})`,
        data: { server, answers: false, maxLagSeconds },
      },
    ];
  }
  // Without the primary's WAL position the replica can only say whether it replayed what it received.
  const primary = ctx.databaseUrl
    ? await connectClient(ctx.databaseUrl, { applicationName: 'lmsctl status' }).catch(() => null)
    : null;
  try {
    const state = await measureReplica(replica, primary);
    const data = { server, answers: true, ...state, maxLagSeconds };
    if (!state.standby)
      return [
        {
          name: 'replica',
          state: 'warn',
          detail: `${server} is not a standby (pg_is_in_recovery() is false): unless it is the primary itself (or was promoted), the API reads data that does not follow DATABASE_URL (${RUNBOOK})`,
          data,
        },
      ];
    const paused = state.replayPaused ? ', replay paused' : '';
    if (state.lagSeconds === null)
      return [
        {
          name: 'replica',
          state: 'warn',
          detail: `${server}: behind the primary by an unknown time (no transaction replayed since it started)${paused}; the API reads from the primary (${RUNBOOK})`,
          data,
        },
      ];
    const lag = `${state.lagSeconds.toFixed(1)} s behind the primary`;
    if (state.lagSeconds > maxLagSeconds)
      return [
        {
          name: 'replica',
          state: 'warn',
          detail: `${server}: ${lag}${paused}, over REPLICA_MAX_LAG_SECONDS (${maxLagSeconds} s): the API reads from the primary (${RUNBOOK})`,
          data,
        },
      ];
    return [
      {
        name: 'replica',
        state: state.replayPaused ? 'warn' : 'ok',
        detail: `${server}: standby, ${lag}${paused}${primary ? '' : ' (the primary did not answer: lag of what the replica received)'}`,
        data,
      },
    ];
  } catch (error) {
    return [{ name: 'replica', state: 'warn', detail: `${server}: ${maskUrl(errorMessage(error))}`, data: { server } }];
  } finally {
    await Promise.all([replica.end(), primary?.end()]);
  }
}

import { formatDuration } from '@lms/core/duration';
import { queryScalar } from '../lib/prometheus.js';
import { RolloutFailed } from './rolling.js';

/** The API's user traffic: the probes Caddy, Docker and Prometheus send are not users. */
const USER_REQUESTS = 'route!~"/health|/ready|/metrics"';

export interface TrafficSample {
  /** Share of user requests answered 5xx (0–1); null without traffic. */
  errorShare: number | null;
  /** 99th percentile latency in seconds; null without traffic. */
  p99Seconds: number | null;
  /** User requests per second. */
  requestRate: number | null;
}

export async function sampleTraffic(prometheusUrl: string, window: string): Promise<TrafficSample> {
  const [errors, total, p99] = await Promise.all([
    queryScalar(prometheusUrl, `sum(rate(http_requests_total{status_code=~"5..",${USER_REQUESTS}}[${window}]))`),
    queryScalar(prometheusUrl, `sum(rate(http_requests_total{${USER_REQUESTS}}[${window}]))`),
    queryScalar(
      prometheusUrl,
      `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{${USER_REQUESTS}}[${window}])))`,
    ),
  ]);
  return {
    errorShare: total ? (errors ?? 0) / total : null,
    p99Seconds: total ? p99 : null,
    requestRate: total,
  };
}

export interface WatchLimits {
  /** How long to watch after the rollout. */
  watchMs: number;
  /** How far the 5xx share may rise over the baseline (0.02: two percentage points). */
  maxErrorRise: number;
  /** How many times the baseline p99 the p99 may reach (and at least baseline + 0.5 s). */
  maxLatencyFactor: number;
  /** Between two looks. */
  intervalMs?: number;
}

/**
 * The watch window after a rollout: every interval, `checkHealth` (the new containers or tasks
 * still run and are healthy) and — with Prometheus — the 5xx share of user requests over the last
 * minute must not rise above the baseline by more than the margin, nor the p99 beyond its limit.
 * The first traffic verdict waits a minute, so the new replicas are found (DNS refresh) and
 * scraped. A breach throws RolloutFailed naming what rose; a minute with too little traffic says
 * nothing.
 */
export async function watchAfterRollout(
  checkHealth: () => Promise<void>,
  limits: WatchLimits,
  prometheus: { url: string; baseline: TrafficSample } | null,
): Promise<void> {
  const started = Date.now();
  const interval = limits.intervalMs ?? 10_000;
  const firstVerdictAt = started + 60_000;
  for (;;) {
    await checkHealth();
    if (prometheus && Date.now() >= firstVerdictAt) {
      const now = await sampleTraffic(prometheus.url, '1m');
      const breach = judge(now, prometheus.baseline, limits);
      if (breach) throw new RolloutFailed(breach, 'api');
    }
    if (Date.now() - started >= limits.watchMs) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(interval, limits.watchMs - (Date.now() - started))));
  }
}

/** Fewer user requests than this in a minute say nothing about a rate. */
const MIN_REQUESTS_PER_MINUTE = 30;

export function judge(now: TrafficSample, baseline: TrafficSample, limits: WatchLimits): string | null {
  if (now.requestRate === null || now.requestRate * 60 < MIN_REQUESTS_PER_MINUTE) return null;
  const before = baseline.errorShare ?? 0;
  if (now.errorShare !== null && now.errorShare > before + limits.maxErrorRise) {
    return `the 5xx share of user requests rose to ${percent(now.errorShare)} (before the deploy: ${percent(before)}; allowed: +${percent(limits.maxErrorRise)})`;
  }
  if (now.p99Seconds !== null && baseline.p99Seconds !== null) {
    const allowed = Math.max(baseline.p99Seconds * limits.maxLatencyFactor, baseline.p99Seconds + 0.5);
    if (now.p99Seconds > allowed) {
      return `the p99 latency rose to ${formatDuration(now.p99Seconds * 1000)} (before the deploy: ${formatDuration(baseline.p99Seconds * 1000)}; allowed: ${formatDuration(allowed * 1000)})`;
    }
  }
  return null;
}

function percent(share: number): string {
  return `${(share * 100).toFixed(1)} %`;
}

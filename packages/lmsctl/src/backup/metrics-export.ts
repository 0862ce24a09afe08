import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Gauge, Pushgateway, Registry } from 'prom-client';
import { errorMessage, maskUrl } from '@lms/core/essentials';

/**
 * Hands backup and drill outcomes to Prometheus, which cannot scrape a command that has
 * exited: through node_exporter's textfile collector (a `.prom` file written atomically) and/or
 * a Pushgateway. The metric names are those the alert rules and dashboards use.
 */
export interface MetricSample {
  name:
    | 'lms_backup_last_success_timestamp_seconds'
    | 'lms_backup_size_bytes'
    | 'lms_drill_last_success_timestamp_seconds'
    | 'lms_drill_last_status'
    | 'lms_drill_duration_seconds'
    | 'lms_drill_rows_checked';
  help: string;
  value: number;
}

export interface MetricsTargets {
  textfileDir?: string;
  pushgatewayUrl?: string;
}

/** Builds the exposition text of `samples`, each labelled with the database. */
function registryOf(samples: MetricSample[], database: string): Registry {
  const registry = new Registry();
  for (const sample of samples) {
    const gauge = new Gauge({ name: sample.name, help: sample.help, labelNames: ['database'], registers: [registry] });
    gauge.set({ database }, sample.value);
  }
  return registry;
}

/**
 * Writes `<textfileDir>/<file>` (replacing it atomically, as the textfile collector requires)
 * and pushes to the Pushgateway under job `lmsctl`, grouped by `group` and database. Returns
 * problems as warnings: an unreachable Pushgateway must not fail a good backup.
 */
export async function exportMetrics(
  targets: MetricsTargets,
  options: { file: string; group: string; database: string; samples: MetricSample[] },
): Promise<string[]> {
  const warnings: string[] = [];
  const registry = registryOf(options.samples, options.database);
  if (targets.textfileDir) {
    const target = path.join(targets.textfileDir, options.file);
    const temporary = `${target}.${process.pid}.tmp`;
    try {
      await writeFile(temporary, await registry.metrics(), { mode: 0o644 });
      await rename(temporary, target);
    } catch (error) {
      warnings.push(`could not write metrics to ${target}: ${errorMessage(error)}`);
    }
  }
  if (targets.pushgatewayUrl) {
    try {
      const gateway = new Pushgateway(targets.pushgatewayUrl, { timeout: 5000 }, registry);
      await gateway.pushAdd({ jobName: 'lmsctl', groupings: { kind: options.group, database: options.database } });
    } catch (error) {
      warnings.push(`could not push metrics to ${maskUrl(targets.pushgatewayUrl)}: ${errorMessage(error)}`);
    }
  }
  return warnings;
}

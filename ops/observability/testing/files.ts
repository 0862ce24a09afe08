import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

/**
 * The observability configuration as the tests read it: alert rules, dashboards and their
 * queries, the YAML files. Shared by the checks of the files themselves (observability.test.ts)
 * and the test that runs them in a real Prometheus (prometheus-live.test.ts).
 */

export const observabilityDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const repositoryRoot = path.resolve(observabilityDir, '../..');
export const dashboardsDir = path.join(observabilityDir, 'grafana/dashboards');

export type YamlMap = { [key: string]: unknown };

export function asMap(value: unknown, what: string): YamlMap {
  if (value === null || value === undefined || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`${what}: expected a mapping`);
  }
  return value as YamlMap;
}

export function asList(value: unknown, what: string): unknown[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${what}: expected a sequence`);
  return value as unknown[];
}

export const asText = (value: unknown): string => (typeof value === 'string' ? value : '');

/** A YAML file of this folder (or any path) as a mapping; anchors and aliases resolved. */
export async function readYaml(file: string): Promise<YamlMap> {
  const absolute = path.resolve(observabilityDir, file);
  return asMap(parse(await readFile(absolute, 'utf8')), path.relative(repositoryRoot, absolute));
}

export interface AlertRule {
  group: string;
  alert: string;
  expr: string;
  for: string;
  labels: YamlMap;
  annotations: YamlMap;
}

/** Every alerting rule of alerts.yml, in file order. */
export async function loadAlertRules(): Promise<AlertRule[]> {
  const alerts = await readYaml('alerts.yml');
  return asList(alerts.groups, 'groups').flatMap((entry) => {
    const group = asMap(entry, 'group');
    return asList(group.rules, 'rules').map((rule) => {
      const map = asMap(rule, 'rule');
      return {
        group: asText(group.name),
        alert: asText(map.alert),
        expr: asText(map.expr),
        for: asText(map.for),
        labels: asMap(map.labels ?? {}, 'labels'),
        annotations: asMap(map.annotations ?? {}, 'annotations'),
      };
    });
  });
}

export interface DashboardQuery {
  /** `file / panel title` or `file / annotation name`. */
  where: string;
  panel: string;
  expr: string;
  datasourceUid: string | undefined;
}

export interface Dashboard {
  file: string;
  uid: string;
  title: string;
  queries: DashboardQuery[];
  variables: Array<{ name: string; query: string }>;
}

interface Panel {
  title?: string;
  panels?: Panel[];
  datasource?: { uid?: string };
  targets?: Array<{ expr?: string; datasource?: { uid?: string } }>;
}

/** Every dashboard JSON with its Prometheus queries: panel targets and annotation queries. */
export async function loadDashboards(): Promise<Dashboard[]> {
  const files = (await readdir(dashboardsDir)).filter((file) => file.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (file) => {
      const json = JSON.parse(await readFile(path.join(dashboardsDir, file), 'utf8')) as {
        uid: string;
        title: string;
        panels?: Panel[];
        templating?: { list?: Array<{ name: string; type: string; query?: string | { query?: string } }> };
        annotations?: { list?: Array<{ name: string; expr?: string; datasource?: { uid?: string } }> };
      };
      const queries: DashboardQuery[] = [];
      const walk = (panels: Panel[]) => {
        for (const panel of panels) {
          walk(panel.panels ?? []);
          for (const target of panel.targets ?? []) {
            queries.push({
              where: `${file} / ${panel.title}`,
              panel: panel.title ?? '',
              expr: target.expr ?? '',
              datasourceUid: target.datasource?.uid ?? panel.datasource?.uid,
            });
          }
        }
      };
      walk(json.panels ?? []);
      // Annotations that query Prometheus (deploys and restarts marked on the graphs) are queries too.
      for (const annotation of json.annotations?.list ?? []) {
        if (annotation.expr) {
          queries.push({
            where: `${file} / annotation ${annotation.name}`,
            panel: `annotation ${annotation.name}`,
            expr: annotation.expr,
            datasourceUid: annotation.datasource?.uid,
          });
        }
      }
      const variables = (json.templating?.list ?? [])
        .filter((variable) => variable.type === 'query')
        .map((variable) => ({
          name: variable.name,
          query: typeof variable.query === 'string' ? variable.query : (variable.query?.query ?? ''),
        }));
      return { file, uid: json.uid, title: json.title, queries, variables };
    }),
  );
}

/**
 * A dashboard query as Grafana sends it to Prometheus: `$__rate_interval`, `$__interval` and
 * `$__range` become `window`, every template variable (`$route`, `${queue}`) the regex `.*`
 * (what "All" sends).
 */
export function substituteGrafanaVariables(expr: string, window: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, window).replace(/\$\{?\w+\}?/g, '.*');
}

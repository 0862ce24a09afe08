import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dashboardsDir, loadDashboards } from './testing/files.js';
import { checkDashboardsAgainstSchema } from './testing/grafana-schema.js';

/**
 * Every dashboard against Grafana's dashboard schema (@grafana/schema 11.2.0, the Grafana the
 * Compose stack runs): no Grafana can be installed on these machines to load them into, so the
 * schema Grafana publishes is the check (see testing/grafana-schema.ts for how it is read).
 */

describe('the Grafana dashboards', () => {
  it('fit Grafana 11.2’s dashboard schema, panel options and field config included', async () => {
    const dashboards: Record<string, string> = {};
    for (const { file } of await loadDashboards()) {
      dashboards[file] = await readFile(path.join(dashboardsDir, file), 'utf8');
    }
    expect(Object.keys(dashboards).length).toBeGreaterThanOrEqual(5);
    const problems = checkDashboardsAgainstSchema(dashboards);
    expect(problems.map((problem) => `${problem.file}:${problem.line}: ${problem.message}`)).toEqual([]);
  });

  it.each([
    [
      'a misspelt panel key',
      (panels: Panel[]) => (stat(panels).titel = 'Requests'),
      /'"titel"' does not exist in type 'PanelOf<"stat"/,
    ],
    [
      'a colour mode Grafana does not have',
      (panels: Panel[]) => (stat(panels).fieldConfig!.defaults.color = { mode: 'rainbow' }),
      /Type '"rainbow"' is not assignable/,
    ],
    [
      'a legend placement Grafana does not have',
      (panels: Panel[]) =>
        ((timeseries(panels).options as { legend: Record<string, unknown> }).legend.placement = 'left'),
      /Type '"left"' is not assignable/,
    ],
    [
      'a grid position that is not a number',
      (panels: Panel[]) => (timeseries(panels).gridPos = { h: '8', w: 12, x: 0, y: 0 }),
      /Type 'string' is not assignable to type 'number'/,
    ],
  ])('refuses %s', async (_what, breakIt, message) => {
    const api = JSON.parse(await readFile(path.join(dashboardsDir, 'api.json'), 'utf8')) as { panels: Panel[] };
    breakIt(api.panels);
    const problems = checkDashboardsAgainstSchema({ 'broken.json': JSON.stringify(api, null, 2) });
    expect(problems).toHaveLength(1);
    expect(problems[0]!.message).toMatch(message);
  });
});

type Panel = Record<string, unknown> & { type: string; fieldConfig?: { defaults: Record<string, unknown> } };
const stat = (panels: Panel[]) => panels.find((panel) => panel.type === 'stat')!;
const timeseries = (panels: Panel[]) => panels.find((panel) => panel.type === 'timeseries')!;

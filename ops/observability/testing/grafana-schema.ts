import path from 'node:path';
import ts from 'typescript';
import { observabilityDir } from './files.js';

/**
 * Checks Grafana dashboard JSON against Grafana's own dashboard schema, as @grafana/schema
 * publishes it: the TypeScript types Grafana generates from its schema definitions, of the
 * version the Compose stack runs (11.2.0). No Grafana server installs on these machines (none in
 * Debian, none on npm), so this is the validation the tests can do.
 *
 * Each dashboard becomes a TypeScript object literal typed as the schema's Dashboard, with its
 * panels narrowed to the schema of their type (timeseries, stat, table, row), and the compiler
 * reports what does not fit: unknown keys, values of the wrong type, enum values that do not
 * exist (a colour mode, a legend placement). Two readings of the schema are deliberate:
 * - Where Grafana's schema is open (annotation queries, template variables, query targets carry
 *   their data source's own fields), extra keys are allowed, as Grafana allows them.
 * - Panel options and field config may leave fields out: the generated types mark fields with a
 *   default as required, and Grafana fills those defaults in when it loads a dashboard.
 */

const composable = '@grafana/schema/dist/esm/raw/composable';

const SCHEMA_TYPES = `
import type * as g from '@grafana/schema';
import type { Options as StatOptions } from '${composable}/stat/panelcfg/x/StatPanelCfg_types.gen.js';
import type { Options as TableOptions, FieldConfig as TableFieldConfig } from '${composable}/table/panelcfg/x/TablePanelCfg_types.gen.js';
import type { Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig } from '${composable}/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.js';

/** The schema as JSON spells it: a string enum's values as string literals. */
type Json<T> = T extends string
  ? \`\${T}\`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Json<U>>
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;
/** Fields Grafana fills in with their defaults may be left out. */
type Defaulted<T> = T extends ReadonlyArray<infer U>
  ? Array<Defaulted<U>>
  : T extends object
    ? { [K in keyof T]?: Defaulted<T[K]> }
    : T;
/** Where the schema is open (\`...\` in Grafana's definitions). */
type Open = { [key: string]: unknown };

type Target = Json<g.DataQuery> & { expr: string } & Open;
type PanelOf<Type extends string, Options, Custom> = Omit<Json<g.Panel>, 'type' | 'options' | 'fieldConfig' | 'targets'> & {
  type: Type;
  options?: Defaulted<Json<Options>>;
  fieldConfig?: {
    defaults: Defaulted<Omit<Json<g.FieldConfig>, 'custom'>> & { custom?: Defaulted<Json<Custom>> };
    overrides: Json<g.FieldConfigSource['overrides']>;
  };
  targets?: Target[];
};
type VisualisationPanel =
  | PanelOf<'timeseries', TimeSeriesOptions, TimeSeriesFieldConfig>
  | PanelOf<'stat', StatOptions, Record<string, never>>
  | PanelOf<'table', TableOptions, TableFieldConfig>;
type Row = Omit<Json<g.RowPanel>, 'panels'> & { panels: VisualisationPanel[] };

export type CheckedDashboard = Omit<Json<g.Dashboard>, 'panels' | 'annotations' | 'templating'> & {
  uid: string;
  title: string;
  panels?: Array<VisualisationPanel | Row>;
  annotations?: { list?: Array<Json<g.AnnotationQuery> & Open> };
  templating?: { list?: Array<Json<g.VariableModel> & Open> };
};
`;

export interface SchemaProblem {
  file: string;
  line: number;
  message: string;
}

/**
 * The problems the schema finds in each dashboard (`file` → JSON text); none means every one
 * fits. Problems carry the line of the dashboard's own JSON.
 */
export function checkDashboardsAgainstSchema(dashboards: Record<string, string>): SchemaProblem[] {
  // Virtual files beside the real ones, so '@grafana/schema' resolves from this repository.
  const dir = path.join(observabilityDir, '.grafana-schema-check');
  const typesFile = path.join(dir, 'schema.ts');
  const header = "import type { CheckedDashboard } from './schema.js';\nexport const dashboard: CheckedDashboard = ";
  const headerLines = header.split('\n').length - 1;
  const sources = new Map<string, { text: string; file: string }>([
    [typesFile, { text: SCHEMA_TYPES, file: 'schema' }],
  ]);
  for (const [file, json] of Object.entries(dashboards)) {
    sources.set(path.join(dir, `${file.replace(/\W/g, '_')}.ts`), { text: `${header}${json.trimEnd()};\n`, file });
  }
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  // The files above exist only here: the host answers for them and asks the disk for the rest.
  const disk = ts.createCompilerHost(options);
  host.fileExists = (name) => sources.has(name) || disk.fileExists(name);
  host.directoryExists = (name) => name === dir || (disk.directoryExists?.(name) ?? true);
  host.readFile = (name) => sources.get(name)?.text ?? disk.readFile(name);
  host.getSourceFile = (name, languageVersion, onError, shouldCreate) => {
    const source = sources.get(name);
    return source
      ? ts.createSourceFile(name, source.text, languageVersion, true)
      : disk.getSourceFile(name, languageVersion, onError, shouldCreate);
  };
  const program = ts.createProgram([...sources.keys()], options, host);
  const problems: SchemaProblem[] = [];
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    const name = diagnostic.file?.fileName;
    const source = name ? sources.get(name) : undefined;
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (!source || !diagnostic.file || diagnostic.start === undefined) {
      problems.push({ file: source?.file ?? name ?? 'schema', line: 0, message });
      continue;
    }
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    problems.push({ file: source.file, line: line + 1 - headerLines, message });
  }
  return problems;
}

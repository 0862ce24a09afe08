// Runs the benchmarks (all, or those named on the command line) and rewrites their sections of
// docs/benchmarks.md. Each figure is reported with the anchor measured beside it in the same
// run: these machines are shared and noisy, so ratios are what carry meaning.
import { readFile, writeFile } from 'node:fs/promises';
import { apiBench } from './api.bench.js';
import { backupRestore } from './backup-restore.bench.js';
import { cliStartup } from './cli-startup.bench.js';
import { machineDescription, passes, ratio, type Benchmark, type BenchSection } from './lib.js';
import { workerThroughput } from './worker.bench.js';

const benchmarks: Benchmark[] = [cliStartup, backupRestore, apiBench, workerThroughput];
const reportUrl = new URL('../docs/benchmarks.md', import.meta.url);

function render(section: BenchSection, date: string): string {
  const rows = section.comparisons.map((comparison) => {
    const sign = comparison.direction === 'at-most' ? '≤' : '≥';
    return `| ${comparison.what} | ${comparison.value.toFixed(1)} ${comparison.unit} | ${comparison.anchorName} | ${comparison.anchor.toFixed(1)} ${comparison.unit} | ${ratio(comparison).toFixed(2)}× | ${sign} ${comparison.limit}× | ${passes(comparison) ? 'pass' : '**FAIL**'} |`;
  });
  return [
    `<!-- bench:${section.id} -->`,
    `## ${section.title}`,
    '',
    `Measured ${date} on ${machineDescription()}.`,
    '',
    section.method,
    '',
    '| figure | value | anchor | anchor value | ratio | target | result |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    ...(section.notes?.length ? ['', ...section.notes] : []),
    `<!-- /bench:${section.id} -->`,
  ].join('\n');
}

const header = `# Benchmarks

<!-- Sections are written by \`pnpm bench [id…]\`; each is replaced by the next run of its benchmark. -->

Every figure is measured side by side with its anchor in the same run, on a shared machine: read
the ratios, not the absolute times.
`;

const wanted = process.argv.slice(2);
const selected = wanted.length ? benchmarks.filter((bench) => wanted.includes(bench.id)) : benchmarks;
if (selected.length === 0) {
  console.error(`unknown benchmark; available: ${benchmarks.map((bench) => bench.id).join(', ')}`);
  process.exitCode = 2;
} else {
  let report = await readFile(reportUrl, 'utf8').catch(() => header);
  let failed = false;
  for (const bench of selected) {
    console.error(`running ${bench.id}…`);
    const section = await bench.run();
    const text = render(section, new Date().toISOString().slice(0, 10));
    console.error(text);
    failed ||= section.comparisons.some((comparison) => !passes(comparison));
    const pattern = new RegExp(`<!-- bench:${section.id} -->[\\s\\S]*?<!-- /bench:${section.id} -->`);
    report = pattern.test(report) ? report.replace(pattern, text) : `${report.trimEnd()}\n\n${text}\n`;
  }
  await writeFile(reportUrl, report);
  if (failed) process.exitCode = 1;
}

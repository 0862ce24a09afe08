import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusItem } from '../health/probes.js';
import { testContext } from '../testing/context.js';
import { check } from './check.js';

let work: string;
/** PATH without any trivy on it (none is installed here, but a developer's machine may have one). */
let pathWithoutTrivy: string;

/** What the registry's bulk advisory endpoint answers, per test: a local stand-in for registry.npmjs.org. */
let advisories: { status: number; body: unknown } = { status: 200, body: {} };
let advisoryRequests = 0;
const registry = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    if (request.url === '/-/npm/v1/security/advisories/bulk') advisoryRequests++;
    response.writeHead(advisories.status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(advisories.body));
  });
});
let registryUrl: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-check-'));
  pathWithoutTrivy = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir && !existsSync(path.join(dir, 'trivy')))
    .join(path.delimiter);
  await new Promise<void>((resolve) => registry.listen(0, '127.0.0.1', resolve));
  registryUrl = `http://127.0.0.1:${(registry.address() as AddressInfo).port}/`;
});

afterAll(async () => {
  await new Promise((resolve) => registry.close(resolve));
  await rm(work, { recursive: true, force: true });
});

async function weekly(env: Record<string, string>, image?: string): Promise<Record<string, StatusItem>> {
  const { ctx } = testContext({ cwd: work, env: { PATH: pathWithoutTrivy, HOME: work, ...env } });
  const result = await check(ctx, 'weekly', { image });
  return Object.fromEntries(result.items.map((item) => [item.name, item]));
}

describe('lmsctl check weekly: dependency audit', () => {
  it('runs pnpm audit --prod of the repository against the real registry and reports its outcome', async () => {
    const audit = (await weekly({}))['dependency audit']!;
    expect(['ok', 'warn', 'fail']).toContain(audit.state);
    const counts = audit.data?.vulnerabilities as Record<string, number> | undefined;
    if (counts) {
      // The registry answered: the state follows the worst severity found.
      const expected = counts.critical || counts.high ? 'fail' : counts.moderate || counts.low ? 'warn' : 'ok';
      expect(audit.state).toBe(expected);
      expect(audit.data?.repository).toBe(path.resolve(import.meta.dirname, '../../../..'));
    } else {
      // The registry did not answer the audit: a warning that says so, never a pass.
      expect(audit.state).toBe('warn');
      expect(audit.detail).toMatch(/^the audit did not run: .+; run `pnpm audit --prod` in .+ again later$/);
    }
  });

  it('fails on a high advisory for a production dependency, naming the package', async () => {
    advisories = {
      status: 200,
      body: {
        zod: [
          {
            id: 990001,
            url: 'https://github.com/advisories/GHSA-test-0000-0000',
            title: 'stand-in advisory',
            severity: 'high',
            vulnerable_versions: '<999.0.0',
            cwe: [],
            cvss: { score: 7.5, vectorString: null },
          },
        ],
      },
    };
    const before = advisoryRequests;
    const audit = (await weekly({ pnpm_config_registry: registryUrl }))['dependency audit']!;
    expect(advisoryRequests).toBe(before + 1);
    expect(audit.state).toBe('fail');
    expect(audit.detail).toMatch(/^1 high in zod: `pnpm audit --prod` in /);
    expect(audit.data?.vulnerabilities).toMatchObject({ high: 1, critical: 0 });
  });

  it('is ok when the registry knows no advisory, and warns when it answers with an error', async () => {
    advisories = { status: 200, body: {} };
    const clean = (await weekly({ pnpm_config_registry: registryUrl }))['dependency audit']!;
    expect(clean.state).toBe('ok');
    expect(clean.detail).toMatch(/^no known vulnerabilities in \d+ production dependencies$/);

    advisories = { status: 405, body: { error: 'method not allowed' } };
    const failed = (await weekly({ pnpm_config_registry: registryUrl }))['dependency audit']!;
    expect(failed.state).toBe('warn');
    expect(failed.detail).toMatch(/^the audit did not run: .*AUDIT_BAD_RESPONSE/);
  });
});

describe('lmsctl check weekly: image scan', () => {
  it('without trivy: a warning naming the image (LMS_IMAGE, or --image) and how to install trivy', async () => {
    const items = await weekly({ LMS_IMAGE: 'registry.example.com/lms:1.2.3' });
    expect(items['image scan']).toMatchObject({ state: 'warn' });
    expect(items['image scan']!.detail).toMatch(
      /^trivy is not installed, registry\.example\.com\/lms:1\.2\.3 was not scanned: install trivy \(https:\/\/trivy\.dev/,
    );
    const byOption = await weekly({ LMS_IMAGE: 'ignored:1' }, 'lms:candidate');
    expect(byOption['image scan']!.detail).toContain('lms:candidate was not scanned');
    const byDefault = await weekly({});
    expect(byDefault['image scan']!.detail).toContain('lms:latest was not scanned');
  });

  it('with trivy: high or critical vulnerabilities fail, none is ok', async () => {
    // A stand-in trivy that records its arguments and answers like `trivy image --format json`.
    const bin = path.join(work, 'bin');
    await mkdir(bin, { recursive: true });
    const report = path.join(work, 'trivy-report.json');
    await writeFile(path.join(bin, 'trivy'), `#!/bin/sh\necho "$@" > "${work}/trivy-args"\ncat "${report}"\n`);
    await chmod(path.join(bin, 'trivy'), 0o755);
    const env = { PATH: `${bin}${path.delimiter}${pathWithoutTrivy}` };

    await writeFile(
      report,
      JSON.stringify({
        Results: [
          {
            Vulnerabilities: [
              { VulnerabilityID: 'CVE-1', Severity: 'CRITICAL' },
              { VulnerabilityID: 'CVE-2', Severity: 'HIGH' },
            ],
          },
          { Vulnerabilities: null },
        ],
      }),
    );
    const vulnerable = (await weekly(env, 'lms:candidate'))['image scan']!;
    expect(vulnerable.state).toBe('fail');
    expect(vulnerable.detail).toMatch(/^lms:candidate: 1 critical, 1 high/);
    expect((await readFile(path.join(work, 'trivy-args'), 'utf8')).trim()).toBe(
      'image --quiet --format json --severity HIGH,CRITICAL lms:candidate',
    );

    await writeFile(report, JSON.stringify({ Results: [{ Vulnerabilities: null }] }));
    expect((await weekly(env, 'lms:candidate'))['image scan']).toMatchObject({
      state: 'ok',
      detail: 'lms:candidate: no high or critical vulnerabilities',
    });
  });
});

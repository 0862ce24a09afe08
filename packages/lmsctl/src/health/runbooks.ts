/**
 * Where the runbooks of the alerts live: the base that ops/observability/alerts.yml names on its
 * `# Runbook base:` line, for the alert lmsctl sends itself (LmsctlDeliveryTest). The
 * observability tests check that both name the same base; docs/runbooks/README.md shows how to
 * point both at another copy of the repository.
 */
export const RUNBOOK_BASE = 'https://github.com/example-org/lms/blob/main/docs/runbooks/';

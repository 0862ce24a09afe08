import { isProcessAlive } from '../packages/lmsctl/src/lib/process-alive.js';
import { docker, leftovers, PROJECT_PREFIX, removeProject } from './harness.js';

/**
 * The stack tests need a Docker engine: without one they fail here, once, saying how to get one
 * (no test is skipped). Projects left by runs that were killed before their clean-up (their
 * process is gone) are removed, so the machine does not fill up with them.
 */
export default async function setup(): Promise<void> {
  const info = await docker(['info', '--format', '{{.ServerVersion}}'], { reject: false });
  if (info.exitCode !== 0) {
    throw new Error(
      'the stack tests (e2e/) need a Docker engine and none answers: start dockerd (as root), and where no image registry is reachable build the stand-in images first — .ci/run does both',
    );
  }
  const projects = new Set(
    (
      await docker([
        'ps',
        '-a',
        '--filter',
        `label=com.docker.compose.project`,
        '--format',
        '{{.Label "com.docker.compose.project"}}',
      ])
    ).stdout
      .split('\n')
      .concat(
        (await docker(['volume', 'ls', '--format', '{{.Label "com.docker.compose.project"}}'])).stdout.split('\n'),
      )
      // Swarm stacks: their services are named <project>_<service>.
      .concat(
        (await docker(['service', 'ls', '--format', '{{.Name}}'], { reject: false })).stdout
          .split('\n')
          .map((name) => name.replace(/_[^_]*$/, '')),
      )
      .map((line) => line.trim())
      .filter((name) => name.startsWith(`${PROJECT_PREFIX}-`)),
  );
  for (const project of projects) {
    const pid = Number(project.split('-')[1]);
    if (Number.isInteger(pid) && !isProcessAlive(pid)) {
      await removeProject(project);
      const left = await leftovers(project);
      if (left.containers.length + left.volumes.length + left.networks.length > 0) {
        throw new Error(`could not remove the stack ${project} of an earlier, killed test run`);
      }
    }
  }
}

// Reaching a compose project on this machine's Docker engine.
import { ToolError } from '../core/cli.ts';
import { containerStatusCommand, parseContainerStatus, projectContainersCommand, type ContainerStatus } from './compose.ts';
import type { Command, Runner } from '../core/exec.ts';
import type { StackAccess } from './smoke.ts';

export function serviceContainerCommand(projectName: string, service: string): Command {
  return {
    argv: [
      'docker', 'ps', '--quiet',
      '--filter', `label=com.docker.compose.project=${projectName}`,
      '--filter', `label=com.docker.compose.service=${service}`,
    ],
    readOnly: true,
    timeoutMs: 15_000,
  };
}

export function publishedPortCommand(containerId: string, port: number): Command {
  return { argv: ['docker', 'port', containerId, `${port}/tcp`], readOnly: true, timeoutMs: 15_000 };
}

/** `docker port` prints lines like 127.0.0.1:18000 or [::1]:18000; prefer loopback IPv4. */
export function parsePublishedPort(stdout: string): string | undefined {
  const lines = stdout.split('\n').map((line) => line.trim()).filter(Boolean);
  const line = lines.find((candidate) => candidate.startsWith('127.0.0.1:')) ?? lines[0];
  if (!line) return undefined;
  const port = line.slice(line.lastIndexOf(':') + 1);
  return `127.0.0.1:${port}`;
}

export async function projectStatus(runner: Runner, projectName: string, wrap = (command: Command) => command): Promise<ContainerStatus[]> {
  const ids = (await runner.run(wrap(projectContainersCommand(projectName)))).stdout.split('\n').filter(Boolean);
  if (ids.length === 0) return [];
  return parseContainerStatus((await runner.run(wrap(containerStatusCommand(ids)))).stdout);
}

export function localAccess(runner: Runner, projectName: string): StackAccess {
  return {
    async baseUrl(service, port) {
      const id = (await runner.run(serviceContainerCommand(projectName, service))).stdout.split('\n')[0];
      if (!id) throw new ToolError(`service ${service} has no running container in project ${projectName}`);
      const published = parsePublishedPort((await runner.attempt(publishedPortCommand(id, port))).stdout);
      if (!published) throw new ToolError(`service ${service} does not publish port ${port}`);
      return `http://${published}`;
    },
    containers: () => projectStatus(runner, projectName),
  };
}

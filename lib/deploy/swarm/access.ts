// Reaching a stack on a swarm through its manager: its services' replicas and tasks (for the smoke test
// and `aidd status`), and a service's published port forwarded over the SSH connection.
import type { ComposeApp, ContainerStatus } from '../../app/compose.ts';
import { ToolError } from '../../core/cli.ts';
import { runSmoke, type CheckOutcome, type StackAccess } from '../../app/smoke.ts';
import { DEADLINES_MS, forwardedBaseUrl, runRemote, type Session } from '../engine.ts';
import { serviceEndpointScript, stackStatusScript } from './remote-scripts.ts';

/** A service of the stack as `aidd status` shows it. */
export interface SwarmServiceStatus {
  service: string;
  running: number;
  desired: number;
  image: string;
  /** The nodes its running tasks are on. */
  nodes: string[];
}

/** `service|NAME|R/D|IMAGE` and `task|NAME.SLOT|NODE|STATE` lines (stackStatusScript) -> services and their tasks. */
export function parseStackStatus(stdout: string, project: string): { services: SwarmServiceStatus[]; tasks: ContainerStatus[] } {
  const unprefixed = (name: string) => (name.startsWith(`${project}_`) ? name.slice(project.length + 1) : name);
  const services: SwarmServiceStatus[] = [];
  const tasks: ContainerStatus[] = [];
  for (const line of stdout.split('\n')) {
    const [kind, name = '', third = '', fourth = ''] = line.trim().split('|').map((field) => field.trim());
    if (kind === 'service') {
      // 1/1, or 1/1 (max 1 per node)
      const [, running = '0', desired = '0'] = /^(\d+)\/(\d+)/.exec(third) ?? [];
      services.push({ service: unprefixed(name), running: Number(running), desired: Number(desired), image: fourth, nodes: [] });
    } else if (kind === 'task') {
      const service = unprefixed(name.replace(/\.[^.]*$/, ''));
      const state = fourth.split(' ')[0] || 'unknown';
      // Swarm counts a task with a healthcheck as running only once it is healthy.
      tasks.push({ id: name, service, state: state.toLowerCase(), health: 'none' });
      const entry = services.find((candidate) => candidate.service === service);
      if (entry && state === 'Running' && third && !entry.nodes.includes(third)) entry.nodes.push(third);
    }
  }
  return { services, tasks };
}

/**
 * Reaches the stack through its manager: its services' replicas, and a service's published port
 * on a node that answers for it (any node behind the routing mesh; in host mode, one running a task),
 * forwarded over the SSH connection.
 */
export function swarmAccess(session: Session): StackAccess {
  let listing: Promise<ContainerStatus[]> | undefined;
  return {
    baseUrl: forwardedBaseUrl(session, async (service, port) => {
      const { stdout } = await runRemote(session, serviceEndpointScript(session.layout, service), DEADLINES_MS.audit);
      const lines = stdout.split('\n').map((line) => line.trim().split(/\s+/));
      const published = lines.find(([kind, target]) => kind === 'port' && target === String(port));
      if (!published) throw new ToolError(`service ${service} does not publish port ${port} on the swarm`);
      const [, , publishedPort, mode] = published;
      const node = mode === 'host' ? lines.find(([kind]) => kind === 'node')?.[1] : '127.0.0.1';
      if (!node) throw new ToolError(`service ${service} has no running task to reach port ${port} on`);
      return { host: node, port: Number(publishedPort) };
    }),
    // A service is up when it runs all its replicas: swarm counts a task as running only once it is healthy,
    // and only on a node that is up (a task on a node that stopped answering is not one).
    containers: () =>
      (listing ??= runRemote(session, stackStatusScript(session.layout), DEADLINES_MS.audit)
        .then(({ stdout }) =>
          parseStackStatus(stdout, session.layout.project).services.map((service) => ({
            id: service.service,
            service: service.service,
            state: service.desired > 0 && service.running === service.desired ? 'running' : `${service.running}/${service.desired} tasks running`,
            health: 'none',
            image: service.image,
          })),
        )
        .finally(() => (listing = undefined))),
  };
}

export async function verifyStack(session: Session, app: ComposeApp, deadlineMs: number): Promise<CheckOutcome[]> {
  if (session.runner.dryRun) return [];
  return runSmoke(swarmAccess(session), { services: app.services.map((service) => service.name), http: app.config.smoke, deadlineMs });
}

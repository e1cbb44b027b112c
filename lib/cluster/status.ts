// The swarm's nodes as `aidd cluster status` shows them, from `docker node inspect` on a manager.
import { formatTable } from '../core/log.ts';

export interface ClusterNode {
  id: string;
  hostname: string;
  role: 'leader' | 'manager' | 'worker';
  availability: string;
  state: string;
  address: string;
  engineVersion: string;
  labels: Record<string, string>;
}

interface NodeInspect {
  ID: string;
  Spec: { Role: string; Availability: string; Labels?: Record<string, string> | null };
  Description: { Hostname: string; Engine?: { EngineVersion?: string } };
  Status: { State: string; Addr?: string };
  ManagerStatus?: { Leader?: boolean; Addr?: string };
}

/** Parses the JSON array `docker node inspect` prints; nodes sorted by hostname. */
export function parseNodes(json: string): ClusterNode[] {
  const inspected = JSON.parse(json) as NodeInspect[];
  return inspected
    .map((node) => {
      // A manager may report 0.0.0.0 as its own address; its manager address names the real one.
      const managerHost = node.ManagerStatus?.Addr?.replace(/:\d+$/, '');
      const address = node.Status.Addr && node.Status.Addr !== '0.0.0.0' ? node.Status.Addr : (managerHost ?? '');
      const role: ClusterNode['role'] = node.Spec.Role === 'manager' ? (node.ManagerStatus?.Leader ? 'leader' : 'manager') : 'worker';
      return {
        id: node.ID,
        hostname: node.Description.Hostname,
        role,
        availability: node.Spec.Availability,
        state: node.Status.State,
        address,
        engineVersion: node.Description.Engine?.EngineVersion ?? '',
        labels: node.Spec.Labels ?? {},
      };
    })
    .sort((a, b) => a.hostname.localeCompare(b.hostname));
}

/** Nodes a swarm cannot schedule on because they are not Ready. */
export function notReady(nodes: ClusterNode[]): ClusterNode[] {
  return nodes.filter((node) => node.state !== 'ready');
}

export function formatNodes(nodes: ClusterNode[]): string {
  const rows = nodes.map((node) => [
    node.hostname,
    node.role,
    node.availability,
    node.state,
    node.address,
    node.engineVersion,
    Object.entries(node.labels).map(([key, value]) => `${key}=${value}`).sort().join(',') || '-',
  ]);
  return formatTable(['HOSTNAME', 'ROLE', 'AVAILABILITY', 'STATE', 'ADDRESS', 'ENGINE', 'LABELS'], rows);
}

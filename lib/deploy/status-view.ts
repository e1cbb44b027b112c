// `aidd status` as people read it: the live release, then one line per container with its state,
// health, uptime, restarts and image (a digest ref for every pinned service), then what needs attention.
import type { StatusReport } from './engine.ts';

/** A short age: 45s, 12m, 3h05m, 2d04h. */
export function formatUptime(startedAt: string | undefined, now: number): string {
  const started = startedAt ? Date.parse(startedAt) : NaN;
  if (!Number.isFinite(started) || started <= 0) return '-';
  const seconds = Math.max(0, Math.floor((now - started) / 1000));
  const [days, hours, minutes] = [Math.floor(seconds / 86_400), Math.floor(seconds / 3_600) % 24, Math.floor(seconds / 60) % 60];
  if (days > 0) return `${days}d${String(hours).padStart(2, '0')}h`;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, '0')}m`;
  return minutes > 0 ? `${minutes}m` : `${seconds}s`;
}

/** A table indented by two spaces, every column but the last padded to its widest cell. */
function table(header: string[], rows: string[][]): string[] {
  if (rows.length === 0) return [];
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column]!.length)));
  return all.map((row) => `  ${row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')}`);
}

export function formatStatus(report: StatusReport, proxyContainer: string, now = Date.now()): string {
  const lines = [`current release: ${report.current ?? 'none'}`];
  if (report.swarm) {
    // On a swarm: a service is its replicas across the nodes.
    lines.push(...table(['SERVICE', 'REPLICAS', 'NODES', 'IMAGE'], report.swarm.map((service) => [service.service, `${service.running}/${service.desired}`, service.nodes.join(',') || '-', service.image])));
  } else {
    const rows = report.services.map((service) => [
      service.service,
      service.state,
      service.health,
      service.state === 'running' ? formatUptime(service.startedAt, now) : '-',
      String(service.restarts ?? '-'),
      service.image ?? '-',
    ]);
    lines.push(...table(['SERVICE', 'STATE', 'HEALTH', 'UP', 'RESTARTS', 'IMAGE'], rows));
    lines.push(`reverse proxy (${proxyContainer}): ${report.proxy ?? 'absent'}`);
  }
  if (report.lock) lines.push(`lock held by ${String(report.lock.who)} since ${String(report.lock.at)}`);
  for (const step of report.runningSteps) lines.push(`still running on the server: ${step}`);
  if (report.backups.length) lines.push(`backups: ${report.backups.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

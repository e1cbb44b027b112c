// A deploy's, rollback's or restore's outcome as Markdown for the job summary: what deploy.yml shows
// on the run's page, written by ssh-deploy itself however it ended.
import { markdownTable } from '../core/github-actions.ts';
import type { DeployReport } from './engine.ts';

export function deploySummary(report: Partial<DeployReport> & { action?: string; result?: string; error?: string }): string {
  const lines = [`### ${report.action ?? 'deploy'}: ${report.result ?? 'failed'}`, ''];
  lines.push(`release \`${report.release ?? '-'}\`, previous \`${report.previous ?? '-'}\``, '');
  const images = Object.entries(report.images ?? {});
  if (images.length > 0) {
    const kept = new Set(report.kept ?? []);
    lines.push(markdownTable(['service', 'image', 'container'], images.map(([service, ref]) => [service, `\`${ref}\``, kept.has(service) ? 'kept (content unchanged)' : 'new'])), '');
  }
  if (report.checks?.length) {
    lines.push(markdownTable(['check', 'ok', 'ms', 'detail'], report.checks.map((check) => [check.name, check.ok ? 'yes' : '**no**', String(check.ms), check.detail])), '');
  }
  if (report.steps?.length) lines.push(`Steps: ${report.steps.map((step) => `${step.step} ${(step.ms / 1000).toFixed(1)} s`).join(', ')}`, '');
  if (report.error) lines.push(`**${report.error}**${report.failedStep ? ` (step: ${report.failedStep})` : ''}`, '');
  if (report.backup) lines.push(`Database backup taken before the migration: \`backups/${report.backup}\` on the server`, '');
  return lines.join('\n');
}

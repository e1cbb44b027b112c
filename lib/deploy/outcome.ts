// How a deploy, a rollback or a restore ended, in words: the line printed and sent to the notification
// targets, and the one JSON object a --json run ends with when it fails.
import type { DeployReport } from './engine.ts';

/** One line on how it ended: printed, and sent to the notification targets. */
export function outcomeLine(report: DeployReport): string {
  const where = report.release ? ` ${report.release}` : '';
  // Going back to an older release leaves the database as the newer one migrated it; say where the data from before is.
  const left = report.action === 'rollback' ? report.previous : report.release;
  const data = report.backup ? `; the database from before ${left} was deployed is in backups/${report.backup} on the server (--restore-backup ${report.backup})` : '';
  const lines: Record<DeployReport['result'], string> = {
    deployed: report.action === 'rollback' ? `rolled back to${where}${data}` : `deployed${where}`,
    unchanged: `no change: release${where} already runs these images, and it is healthy`,
    'rolled-back': `FAILED: ${report.error}; rolled back to ${report.previous}, which is serving${data}`,
    restored: `restored backups/${report.backup} into the database of${where}`,
    failed: `FAILED: ${report.error ?? 'see the checks'}`,
  };
  return lines[report.result];
}

/** The one JSON object a --json run ends with when it fails. */
export function failureJson(mode: string, report: DeployReport | undefined, error: unknown): Record<string, unknown> {
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  return report ? { ...report, ok: false, result: 'failed', error: report.error ?? message } : { ok: false, action: mode, result: 'failed', error: message };
}


import { describe, expect, it } from 'vitest';
import { newReport, type DeployReport } from '../../lib/deploy/engine.ts';
import { failureJson, outcomeLine } from '../../lib/deploy/outcome.ts';

function report(fields: Partial<DeployReport>): DeployReport {
  return { ...newReport(fields.action ?? 'deploy'), ...fields };
}

describe('outcomeLine', () => {
  it('says how each kind of run ended, naming the release', () => {
    expect(outcomeLine(report({ ok: true, result: 'deployed', release: 'r2' }))).toBe('deployed r2');
    expect(outcomeLine(report({ ok: true, result: 'unchanged', release: 'r2' }))).toBe('no change: release r2 already runs these images, and it is healthy');
    expect(outcomeLine(report({ action: 'restore-backup', ok: true, result: 'restored', release: 'r2', backup: 'r2.dump' }))).toBe('restored backups/r2.dump into the database of r2');
    expect(outcomeLine(report({ result: 'failed', error: 'migration failed' }))).toBe('FAILED: migration failed');
    expect(outcomeLine(report({ result: 'failed' }))).toBe('FAILED: see the checks');
  });

  it('names the backup that holds the data from before the release a rollback leaves', () => {
    expect(outcomeLine(report({ action: 'rollback', ok: true, result: 'deployed', release: 'r1', previous: 'r2', backup: 'r1.dump' }))).toBe(
      'rolled back to r1; the database from before r2 was deployed is in backups/r1.dump on the server (--restore-backup r1.dump)',
    );
    expect(outcomeLine(report({ result: 'rolled-back', release: 'r3', previous: 'r2', error: 'the new api container did not become healthy', backup: 'r2.dump' }))).toBe(
      'FAILED: the new api container did not become healthy; rolled back to r2, which is serving; the database from before r3 was deployed is in backups/r2.dump on the server (--restore-backup r2.dump)',
    );
  });
});

describe('failureJson', () => {
  it('keeps how far a run got, and says failed with the first line of the error', () => {
    const started = report({ release: 'r3', steps: [{ step: 'connect', ms: 300 }] });
    expect(failureJson('deploy', started, new Error('preflight failed\ndetails'))).toMatchObject({ ok: false, result: 'failed', release: 'r3', error: 'preflight failed', steps: [{ step: 'connect', ms: 300 }] });
    expect(failureJson('deploy', report({ error: 'the lock is held' }), new Error('other'))).toMatchObject({ error: 'the lock is held' });
  });

  it('is the mode and the error alone for a run without a report', () => {
    expect(failureJson('status', undefined, new Error('cannot reach 127.0.0.1:22'))).toEqual({ ok: false, action: 'status', result: 'failed', error: 'cannot reach 127.0.0.1:22' });
  });
});

// setup-env's write path (issue 9, "Also"): an exclusive temporary file and a rename, never following a
// link planted where the temporary file or the .env would be.
import { lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeEnvFile } from '../../lib/env/env-file.ts';

function setting(): { dir: string; file: string; victim: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aidd-envwrite-'));
  const victim = path.join(dir, 'victim');
  writeFileSync(victim, 'untouched\n', { mode: 0o644 });
  return { dir, file: path.join(dir, '.env.production'), victim };
}

describe('writeEnvFile', () => {
  it('does not follow a link planted at the temporary name a process would use', () => {
    const { dir, file, victim } = setting();
    // Every name a predictable scheme could pick for this process.
    for (const name of [`.${path.basename(file)}.${process.pid}.tmp`, `${path.basename(file)}.tmp`]) symlinkSync(victim, path.join(dir, name));
    writeEnvFile(file, 'SECRET=s3cr3t\n');
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(readFileSync(file, 'utf8')).toBe('SECRET=s3cr3t\n');
    expect(lstatSync(file).isFile()).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('replaces a link at the file itself instead of writing through it', () => {
    const { file, victim } = setting();
    symlinkSync(victim, file);
    writeEnvFile(file, 'SECRET=s3cr3t\n');
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(lstatSync(file).isSymbolicLink()).toBe(false);
  });

  it('leaves no temporary file behind', () => {
    const { dir, file } = setting();
    writeEnvFile(file, 'A=1\n');
    writeEnvFile(file, 'A=2\n');
    expect(readdirSync(dir).sort()).toEqual(['.env.production', 'victim']);
  });
});

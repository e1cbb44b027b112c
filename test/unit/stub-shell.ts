// Where a test runs a script or a remote command under a shell with stub programs first on PATH: a
// scratch directory holding `markers` (an injected `touch NAME` leaves NAME there), a HOME, `bin` for
// the stubs, and `calls`, where each stub call leaves its argv NUL-separated in a file of its own (calls
// run side by side, and one shared log would interleave them). A stub records itself with
// `printf '%s\0' ... > "$(mktemp "$AIDD_STUB_CALLS/call.XXXXXXXX")"`.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface StubShell {
  scratch: string;
  markers: string;
  home: string;
  bin: string;
  calls: string;
  /** The environment a script runs in: the stubs first on PATH, HOME, and where they record. */
  env: Record<string, string>;
}

export function stubShell(prefix: string): StubShell {
  const scratch = mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const [markers, home, bin, calls] = ['markers', 'home', 'bin', 'calls'].map((name) => path.join(scratch, name)) as [string, string, string, string];
  for (const dir of [markers, home, bin, calls]) mkdirSync(dir);
  return { scratch, markers, home, bin, calls, env: { PATH: `${bin}:/usr/bin:/bin`, HOME: home, AIDD_STUB_CALLS: calls } };
}

/** Every recorded stub call's argv, in no particular order. */
export function stubCalls(shell: StubShell): string[][] {
  return readdirSync(shell.calls).map((file) => readFileSync(path.join(shell.calls, file), 'utf8').split('\0').slice(0, -1));
}

/** Forgets the recorded calls, and with `markers` the marker files too: between cases. */
export function clearStubShell(shell: StubShell, what: { markers?: boolean } = {}): void {
  for (const dir of what.markers ? [shell.calls, shell.markers] : [shell.calls]) for (const file of readdirSync(dir)) rmSync(path.join(dir, file), { recursive: true });
}

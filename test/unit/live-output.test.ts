import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { LiveBoard, liveOutputWanted } from '../../lib/core/live-output.ts';
import { createLogger } from '../../lib/core/log.ts';
import { registerSecret } from '../../lib/core/secrets.ts';

/** A terminal that keeps what was written; `screen` applies the two control sequences the board uses. */
function fakeTerminal(columns = 60) {
  const writes: string[] = [];
  const terminal = { columns, write: (text: string) => void writes.push(text) };
  const screen = () => {
    const lines: string[] = [];
    for (const text of writes) {
      const clear = /^\x1b\[(\d+)F\x1b\[J$/.exec(text);
      if (clear) lines.splice(lines.length - Number(clear[1]));
      else lines.push(...text.replace(/\n$/, '').split('\n'));
    }
    return lines.map((line) => line.replace(/\x1b\[\d+m/g, ''));
  };
  return { terminal, writes, screen };
}

describe('LiveBoard', () => {
  it('shows a running command with its last lines, keeps log lines above, and folds into one line when it ends', () => {
    const { terminal, screen } = fakeTerminal();
    const board = new LiveBoard(terminal);
    const id = board.start('building api', 1_000);
    for (let step = 1; step <= 6; step++) board.line(id, `#${step} step ${step}`);
    board.above('==> a log line\n');
    expect(screen()).toEqual(['==> a log line', expect.stringMatching(/^. building api \(\d+ s\)$/), '  | #3 step 3', '  | #4 step 4', '  | #5 step 5', '  | #6 step 6']);
    board.end(id, { ok: true, fullOutput: '' }, 13_300);
    expect(screen()).toEqual(['==> a log line', '✓ building api (12.3 s)']);
  });

  it('shows two commands at once, each under its title, and cuts lines to the terminal width', () => {
    const { terminal, screen } = fakeTerminal(30);
    const board = new LiveBoard(terminal);
    const web = board.start('building web');
    const worker = board.start('building worker');
    board.line(web, 'x'.repeat(80));
    board.line(worker, 'short');
    const lines = screen();
    expect(lines.map((line) => line.replace(/\(\d+ s\)/, '(N s)'))).toEqual([expect.stringMatching(/^. building web \(N s\)$/), `  | ${'x'.repeat(24)}…`, expect.stringMatching(/^. building worker \(N s\)$/), '  | short']);
    expect(lines.every((line) => line.length <= 29)).toBe(true);
    board.end(web, { ok: true, fullOutput: '' });
    board.end(worker, { ok: true, fullOutput: '' });
  });

  it('on failure keeps the last 30 lines and saves the whole output, redacted, in a private file', () => {
    const { terminal, screen } = fakeTerminal(200);
    const board = new LiveBoard(terminal);
    registerSecret('live-secret-5521');
    const output = Array.from({ length: 40 }, (_, index) => `line ${index + 1}`).join('\n') + '\nusing live-secret-5521\n';
    const id = board.start('building bot', 0);
    board.end(id, { ok: false, fullOutput: output }, 2_000);
    const lines = screen();
    expect(lines[0]).toBe('✗ building bot (2.0 s)');
    expect(lines.slice(1, 31)).toEqual([...Array.from({ length: 29 }, (_, index) => `  | line ${index + 12}`), '  | using [REDACTED]']);
    const file = /^ {2}full output: (.+)$/.exec(lines[31]!)?.[1];
    expect(file).toBeDefined();
    expect(statSync(file!).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file!)).mode & 0o777).toBe(0o700);
    expect(readFileSync(file!, 'utf8')).toBe(output.replace('live-secret-5521', '[REDACTED]'));
  });
});

describe('a logger task (a step of the tool itself)', () => {
  it('is a spinner line with its elapsed time on the board, with log lines above it, and one ✓ or ✗ line when it ends', () => {
    const { terminal, screen } = fakeTerminal();
    const live = new LiveBoard(terminal);
    const logger = createLogger({ prefix: 'test', live });
    const preflight = logger.task('Preflight: docker, compose, disk');
    logger.info('docker 20.10, 5000 MiB free');
    expect(screen()).toEqual(['    docker 20.10, 5000 MiB free', expect.stringMatching(/^. Preflight: docker, compose, disk \(0 s\)$/)]);
    preflight(true);
    const migrate = logger.task('Migrating');
    migrate(false);
    // A failed step has no output of its own to show: its error is printed by whoever handles it.
    expect(screen()).toEqual(['    docker 20.10, 5000 MiB free', expect.stringMatching(/^✓ Preflight: docker, compose, disk \(0\.\d s\)$/), expect.stringMatching(/^✗ Migrating \(0\.\d s\)$/)]);
  });

  it('is a plain step line without a board, and nothing with quiet (--json)', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      createLogger({ prefix: 'test' }).task('Pulling api')(true);
      createLogger({ prefix: 'test', quiet: true }).task('Pulling bot')(false);
      expect(stderr.mock.calls.map(([text]) => text)).toEqual(['==> Pulling api\n']);
    } finally {
      stderr.mockRestore();
    }
  });
});

describe('liveOutputWanted', () => {
  it('only for a person at a terminal', () => {
    expect(liveOutputWanted({}, true)).toBe(true);
    expect(liveOutputWanted({}, false)).toBe(false);
    expect(liveOutputWanted({ CI: 'true' }, true)).toBe(false);
    expect(liveOutputWanted({ CI: 'false' }, true)).toBe(true);
    expect(liveOutputWanted({ NO_COLOR: '1' }, true)).toBe(false);
    expect(liveOutputWanted({ NO_COLOR: '' }, true)).toBe(true);
    expect(liveOutputWanted({ TERM: 'dumb' }, true)).toBe(false);
  });
});

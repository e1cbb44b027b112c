// Human progress goes to stderr so stdout stays clean for --json results.
import type { LiveBoard } from './live-output.ts';
import { redact } from './secrets.ts';

export interface Logger {
  step(message: string): void;
  /**
   * A step that takes a while: on a terminal, a live line with a spinner and the elapsed time that
   * becomes ✓ or ✗ with its duration; elsewhere the same line as step(). Call the result when it ends.
   */
  task(title: string): (ok: boolean) => void;
  info(message: string): void;
  warn(message: string): void;
}

export function createLogger(options: { quiet?: boolean; prefix: string; live?: LiveBoard }): Logger {
  const write = (line: string) => {
    if (options.quiet) return;
    // Above the live lines of running commands, when there are any.
    if (options.live) options.live.above(`${line}\n`);
    else process.stderr.write(redact(line) + '\n');
  };
  return {
    step: (message) => write(`==> ${message}`),
    task: (title) => {
      if (options.quiet) return () => undefined;
      if (!options.live) {
        write(`==> ${title}`);
        return () => undefined;
      }
      const { live } = options;
      const id = live.start(title);
      return (ok) => live.end(id, { ok, fullOutput: '' });
    },
    info: (message) => write(`    ${message}`),
    warn: (message) => write(`${options.prefix}: warning: ${message}`),
  };
}

/** Writes a result for machines: exactly one JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(redact(JSON.stringify(value, null, 2)) + '\n');
}

/** A plain-text table with padded columns, for summaries and benchmark figures. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  return [header, ...rows].map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()).join('\n');
}

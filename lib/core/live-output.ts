// Long output on a terminal (docker build, compose up --build), folded: while a command runs, its title,
// elapsed time and last lines are redrawn in place under the log; when it ends, one line says how it
// ended, and a failure also shows its last 30 lines and where the whole output was saved. Log lines
// written meanwhile (lib/core/log.ts) go above the live lines. Only on a terminal: elsewhere output is
// printed line by line, as CI logs want it.
// Why not @clack/prompts' taskLog: tried on this terminal view, it overwrites log lines written while it
// runs, shows no elapsed time, and keeps only its own line limit of a failed command's output.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inCi } from './cli.ts';
import { redact } from './secrets.ts';

/** Lines of each running command shown under its title. */
const TAIL_LINES = 4;
/** Lines of a failed command's output printed when it fails. */
const FAILURE_LINES = 30;
const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

interface Running {
  title: string;
  started: number;
  lines: string[];
}

export interface Terminal {
  write(text: string): void;
  columns: number;
}

/** The live part of the screen: every running command's title and last lines. */
export class LiveBoard {
  readonly #terminal: Terminal;
  readonly #running = new Map<number, Running>();
  #drawn = 0;
  #frame = 0;
  #nextId = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(terminal: Terminal) {
    this.#terminal = terminal;
  }

  /** Starts showing a command; returns its id for `line` and `end`. */
  start(title: string, now = Date.now()): number {
    const id = this.#nextId++;
    this.#running.set(id, { title, started: now, lines: [] });
    this.#timer ??= setInterval(() => this.#redraw(), 100).unref();
    this.#redraw(now);
    return id;
  }

  line(id: number, text: string): void {
    const running = this.#running.get(id);
    if (!running || text.trim() === '') return;
    running.lines.push(plain(text));
    if (running.lines.length > FAILURE_LINES) running.lines.shift();
    this.#redraw();
  }

  /** Replaces the command's live lines by its outcome; a failure keeps its last lines and the log's path. */
  end(id: number, outcome: { ok: boolean; fullOutput: string }, now = Date.now()): void {
    const running = this.#running.get(id);
    if (!running) return;
    this.#running.delete(id);
    const seconds = ((now - running.started) / 1000).toFixed(1);
    let text = `${outcome.ok ? '✓' : '✗'} ${running.title} (${seconds} s)\n`;
    // A step of the tool's own (no output of its own) fails with its error, which is printed anyway.
    if (!outcome.ok && outcome.fullOutput.trim() !== '') {
      const lines = outcome.fullOutput.split('\n').filter((line) => line.trim() !== '');
      text += lines.slice(-FAILURE_LINES).map((line) => `  | ${line}\n`).join('');
      text += `  full output: ${saveOutput(outcome.fullOutput)}\n`;
    }
    this.above(text);
    if (this.#running.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  /** Writes text above the live lines (a log line), then draws them again. */
  above(text: string): void {
    this.#clear();
    this.#terminal.write(redact(text));
    this.#draw();
  }

  #redraw(now = Date.now()): void {
    this.#frame = (this.#frame + 1) % FRAMES.length;
    this.#clear();
    this.#draw(now);
  }

  #clear(): void {
    // To the start of the first live line, then erase to the end of the screen.
    if (this.#drawn > 0) this.#terminal.write(`\x1b[${this.#drawn}F\x1b[J`);
    this.#drawn = 0;
  }

  #draw(now = Date.now()): void {
    const width = Math.max(20, this.#terminal.columns - 1);
    const fit = (line: string) => (line.length > width ? `${line.slice(0, width - 1)}…` : line);
    const lines: string[] = [];
    for (const running of this.#running.values()) {
      lines.push(fit(`${FRAMES[this.#frame]} ${running.title} (${Math.floor((now - running.started) / 1000)} s)`));
      for (const line of running.lines.slice(-TAIL_LINES)) lines.push(`\x1b[2m${fit(`  | ${line}`)}\x1b[22m`);
    }
    if (lines.length > 0) this.#terminal.write(redact(`${lines.join('\n')}\n`));
    this.#drawn = lines.length;
  }
}

/**
 * The whole output of a failed command, redacted, in a private directory (0700; the file 0600). Where
 * it cannot be saved, says why: the command's own failure is what matters.
 */
function saveOutput(text: string): string {
  try {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'aidd-output-')), 'output.log');
    writeFileSync(file, redact(text), { mode: 0o600 });
    return file;
  } catch (error) {
    return `not saved (${(error as Error).message})`;
  }
}

/** A line as the live view can draw it in one row: no escape sequences, carriage returns or tabs of its own. */
function plain(line: string): string {
  return line.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, '').replace(/\r/g, '').replace(/\t/g, '  ');
}

/** The board on this process's stderr. */
export function terminalBoard(): LiveBoard {
  return new LiveBoard({ write: (text) => process.stderr.write(text), get columns() { return process.stderr.columns ?? 80; } });
}

/** Live output is for a person at a terminal: not in CI, not with NO_COLOR, not when stderr is a pipe. */
export function liveOutputWanted(env: NodeJS.ProcessEnv = process.env, stderrIsTty = Boolean(process.stderr.isTTY)): boolean {
  // NO_COLOR counts when set and not empty (no-color.org).
  return stderrIsTty && !inCi(env) && !env.NO_COLOR && env.TERM !== 'dumb';
}

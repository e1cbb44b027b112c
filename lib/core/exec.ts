// The one place the toolkit runs commands. Every command is an argv array built by a pure
// function elsewhere in lib; the runner knows about dry-run, timeouts and secrets.
import os from 'node:os';
// zx/core: the process runner alone, without the scripting globals zx loads for its own scripts (a third of its start-up).
import { $, type ProcessPromise } from 'zx/core';
import { GROUP_END, groupStart, inGithubActions } from './github-actions.ts';
import type { LiveBoard } from './live-output.ts';
import { redact, REDACTED, Secret } from './secrets.ts';
import type { Logger } from './log.ts';

export interface Command {
  argv: string[];
  /** Fed on stdin: passwords, remote scripts. Secret input is never printed. */
  input?: string | Secret;
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** Runs in dry-run too: it only reads state (git rev-parse, docker inspect). */
  readOnly?: boolean;
  /** Forward output lines (redacted) while the command runs: long builds and pulls. */
  stream?: boolean;
  /** What the live view calls a streamed command (default: the command itself). */
  title?: string;
  /** Hands the terminal to the command (a walkthrough calling another walkthrough); nothing is captured. */
  interactive?: boolean;
  /**
   * Runs in a process group of its own, so a Ctrl-C on the terminal does not reach it: the script's
   * signal handler decides when it stops (a remote step is never cut by the first Ctrl-C).
   */
  shielded?: boolean;
}

export interface Result {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** True when dry-run skipped the command. */
  skipped: boolean;
  durationMs: number;
}

export class CommandError extends Error {
  readonly command: Command;
  readonly result: Result;

  constructor(command: Command, result: Result) {
    const detail = lastLine(result.stderr) || lastLine(result.stdout) || `exit code ${result.exitCode}`;
    super(redact(`${describe(command)} failed: ${detail}`));
    this.command = command;
    this.result = result;
  }
}

/** The last non-blank line of a command's output: what one-line errors quote. */
export function lastLine(text: string): string {
  const lines = text.trim().split('\n').filter((line) => line.trim() !== '');
  return lines.at(-1)?.trim() ?? '';
}

/** POSIX single-quoting: safe in bash and dash alike. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The printable form of a command: shell-quoted, secrets redacted, stdin shown as a note. */
export function describe(command: Command): string {
  // Variables set for the command are part of it (DOCKER_BUILDKIT=1 changes what docker does).
  const env = Object.entries(command.env ?? {})
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `${name}=${/TOKEN|PASSWORD|SECRET|KEY/i.test(name) ? REDACTED : shellQuote(value)}`);
  let text = [...env, ...command.argv.map(shellQuote)].join(' ');
  if (command.input instanceof Secret) text += ` <<< ${REDACTED}`;
  else if (command.input !== undefined) text += ' <<< (script on stdin)';
  return redact(text);
}

export interface RunnerOptions {
  dryRun?: boolean;
  /** Print each command before it runs. */
  verbose?: boolean;
  logger: Logger;
  /** On a terminal: streamed output folds into live lines (lib/core/live-output.ts). */
  live?: LiveBoard;
}

export class Runner {
  readonly dryRun: boolean;
  readonly #verbose: boolean;
  readonly #logger: Logger;
  readonly #live: LiveBoard | undefined;
  /** Every command this runner was asked to run, in order (the dry-run plan). */
  readonly plan: string[] = [];

  constructor(options: RunnerOptions) {
    this.dryRun = options.dryRun ?? false;
    this.#verbose = options.verbose ?? false;
    this.#logger = options.logger;
    this.#live = options.live;
  }

  /** Runs a command and returns its result whatever the exit code. */
  async attempt(command: Command): Promise<Result> {
    const text = describe(command);
    this.plan.push(text);
    if (this.dryRun && !command.readOnly) {
      this.#logger.info(`[dry-run] $ ${text}`);
      // A remote script is part of the plan: show it (secrets are redacted by the logger).
      if (typeof command.input === 'string') this.#logger.info(command.input.trimEnd().replace(/^/gm, '    | '));
      return { exitCode: 0, stdout: '', stderr: '', skipped: true, durationMs: 0 };
    }
    if (this.#verbose) this.#logger.info(`$ ${text}`);
    const started = Date.now();
    const [program, ...args] = command.argv;
    if (!program) throw new Error('empty command');
    const input = command.input instanceof Secret ? command.input.reveal() : command.input;
    const child: ProcessPromise = $({
      input,
      env: { ...process.env, ...command.env } as NodeJS.ProcessEnv,
      cwd: command.cwd,
      timeout: command.timeoutMs,
      quiet: true,
      verbose: false,
      nothrow: true,
      detached: command.shielded === true && !command.interactive,
      ...(command.interactive ? { stdio: 'inherit' as const } : {}),
    })`${program} ${args}`;
    // On a terminal, long output folds into live lines; on GitHub Actions, into a group the log shows closed.
    const live = command.stream && this.#live ? { board: this.#live, id: this.#live.start(command.title ?? text) } : undefined;
    const grouped = command.stream === true && !live && inGithubActions();
    if (grouped) process.stderr.write(`${groupStart(text)}\n`);
    const show = (line: string) => {
      if (live) live.board.line(live.id, line);
      // Prefixed with what produced it, so lines of builds running side by side can be told apart.
      else if (line.trim() !== '') this.#logger.info(`  ${command.title ? `${command.title} ` : ''}| ${line}`);
    };
    // A line split across chunks is shown once it is whole.
    const pending = { stdout: '', stderr: '' };
    if (command.stream) {
      for (const stream of ['stdout', 'stderr'] as const) {
        child[stream].on('data', (chunk: Buffer) => {
          const lines = (pending[stream] + chunk.toString()).split('\n');
          pending[stream] = lines.pop()!;
          for (const line of lines) show(line);
        });
      }
    }
    const output = await child;
    for (const rest of Object.values(pending)) if (rest) show(rest);
    if (grouped) process.stderr.write(`${GROUP_END}\n`);
    live?.board.end(live.id, { ok: output.exitCode === 0, fullOutput: `${output.stdout}${output.stderr}` });
    return {
      // Killed by a signal (a timeout sends SIGTERM): the shell's convention, 128 + the signal number.
      exitCode: output.exitCode ?? 128 + (output.signal ? (os.constants.signals[output.signal] ?? 0) : 0),
      stdout: output.stdout,
      stderr: output.stderr,
      skipped: false,
      durationMs: Date.now() - started,
    };
  }

  /** Runs a command and throws CommandError unless it exits 0. */
  async run(command: Command): Promise<Result> {
    const result = await this.attempt(command);
    if (result.exitCode !== 0) throw new CommandError(command, result);
    return result;
  }

}

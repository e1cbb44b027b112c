// Flags, help, errors and exit codes, the same way in every script.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { errorAnnotation, inGithubActions } from './github-actions.ts';
import { redact } from './secrets.ts';

/** Exit codes shared by every script; documented in README and each --help. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (a build, a check, a remote step). */
  failed: 1,
  /** Bad input: an unknown flag, a missing answer, an invalid file or variable. Nothing was changed. */
  usage: 2,
  /** Refused: a lock is held by another deploy, or a host key does not match. Nothing was changed. */
  refused: 3,
  /** A deploy failed and the previous release was restored. */
  rolledBack: 4,
  /** The person cancelled a prompt (Ctrl-C, Escape); nothing was changed. */
  cancelled: 130,
} as const;

/** An error that ends a script with one line on stderr and a chosen exit code. */
export class ToolError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT.failed) {
    super(message);
    this.exitCode = exitCode;
  }
}

export class UsageError extends ToolError {
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
  short?: string;
  multiple?: boolean;
  /** Environment variable read when the flag is absent (the CI twin of a prompt). */
  env?: string;
  /** Placeholder shown in --help, e.g. PATH. */
  value?: string;
}

export interface ScriptSpec {
  name: string;
  summary: string;
  options: Record<string, OptionSpec>;
  /** Words after the flags (shown in the usage line); without it, any is an error. Parsed into `_`. */
  positionals?: string;
  examples?: string[];
}

export type Values = Record<string, string | boolean | string[] | undefined>;

const EXIT_HELP = `Exit codes: 0 ok, 1 failed, 2 bad input (nothing changed), 3 refused (lock held or host key mismatch), 4 deploy failed and rolled back, 130 cancelled (Ctrl-C), 143 stopped (SIGTERM).`;

/**
 * `usage` is how the script was invoked when that was not `npx tsx scripts/NAME.ts`: `aidd status`
 * gives its own usage line and the script form it stands for (lib/core/subcommands.ts).
 */
export function helpText(spec: ScriptSpec, usage?: string): string {
  const rows = Object.entries({ ...spec.options, help: { type: 'boolean', help: 'Show this help.', short: 'h' } as OptionSpec, version: { type: 'boolean', help: 'Show the toolkit version.' } as OptionSpec }).map(
    ([name, option]) => {
      const flag = `${option.short ? `-${option.short}, ` : '    '}--${name}${option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : ''}`;
      const env = option.env ? ` [env ${option.env}]` : '';
      return `  ${flag.padEnd(30)} ${option.help}${env}`;
    },
  );
  const examples = spec.examples?.length ? `\nExamples:\n${spec.examples.map((line) => `  ${line}`).join('\n')}\n` : '';
  return `Usage: ${usage ?? `npx tsx scripts/${spec.name}.ts [options]${spec.positionals ? ` ${spec.positionals}` : ''}`}\n\n${spec.summary}\n\nOptions:\n${rows.join('\n')}\n${examples}\n${EXIT_HELP}\n`;
}

/** Parses argv; flags absent on the command line fall back to their environment variable. */
export function parseCli(spec: ScriptSpec, argv: string[]): Values | 'help' | 'version' {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const [name, option] of Object.entries(spec.options)) {
    options[name] = { type: option.type, multiple: option.multiple ?? false, ...(option.short ? { short: option.short } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: spec.positionals !== undefined });
  } catch (error) {
    // node's messages are long; keep the useful first sentence and point at --help.
    const message = (error as Error).message.split('. ')[0]!.replace(/\.$/, '');
    throw new UsageError(`${message}; see --help`);
  }
  const values = { ...parsed.values, _: parsed.positionals } as Values;
  if (values.help) return 'help';
  if (values.version) return 'version';
  for (const [name, option] of Object.entries(spec.options)) {
    const fromEnv = option.env ? process.env[option.env] : undefined;
    if (values[name] !== undefined || fromEnv === undefined || fromEnv === '') continue;
    if (option.type === 'boolean') values[name] = !['0', 'false', 'no'].includes(fromEnv.toLowerCase());
    else values[name] = option.multiple ? fromEnv.split(',').map((item) => item.trim()) : fromEnv;
  }
  return values;
}

/** CI set to anything but empty, false or 0, as CI systems set it. */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** Prompts are allowed only on a real terminal outside CI; everywhere else a missing answer is an error. */
export function isInteractive(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY) && !inCi();
}

export function stringValue(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** "aidd-devops VERSION", from the toolkit's package.json. */
export const TOOLKIT_VERSION = `aidd-devops ${(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version}`;

/** The oldest Node.js that runs the scripts' TypeScript without a loader (type stripping on by default). */
export const MIN_NODE = { major: 22, minor: 18 } as const;

/** Refuses a Node.js older than MIN_NODE in one line that says how to get a newer one. */
export function requireNode(version: string): void {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major > MIN_NODE.major || (major === MIN_NODE.major && minor >= MIN_NODE.minor)) return;
  throw new ToolError(`Node.js ${MIN_NODE.major}.${MIN_NODE.minor} or newer is needed, this is ${version}; install Node.js ${MIN_NODE.major} LTS (nvm install, as .nvmrc says) and run again`);
}

/** Set by `aidd` for the script it runs (the usage line of the subcommand); not passed on to child processes. */
export const SUBCOMMAND_USAGE_VARIABLE = 'AIDD_SUBCOMMAND_USAGE';

/** Runs a script's body: --help, one-line errors on stderr, exit codes through process.exitCode. */
export async function runScript(spec: ScriptSpec, body: (values: Values) => Promise<number | void>): Promise<void> {
  const usage = process.env[SUBCOMMAND_USAGE_VARIABLE];
  delete process.env[SUBCOMMAND_USAGE_VARIABLE];
  try {
    requireNode(process.versions.node);
    const values = parseCli(spec, process.argv.slice(2));
    if (values === 'help' || values === 'version') {
      process.stdout.write(values === 'help' ? helpText(spec, usage) : `${TOOLKIT_VERSION}\n`);
      return;
    }
    process.exitCode = (await body(values)) ?? EXIT.ok;
  } catch (error) {
    const exitCode = error instanceof ToolError ? error.exitCode : EXIT.failed;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(redact(`${spec.name}: error: ${message.split('\n')[0]}`) + '\n');
    // On GitHub Actions the same line becomes an annotation on the run's page (stderr: stdout may hold --json).
    if (inGithubActions()) process.stderr.write(`${errorAnnotation(spec.name, message.split('\n')[0]!)}\n`);
    if (process.env.AIDD_DEBUG && error instanceof Error && error.stack) process.stderr.write(redact(error.stack) + '\n');
    process.exitCode = exitCode;
  }
}

export function parseSeconds(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`${flag} ${value} is not a positive number of seconds`);
  return seconds;
}

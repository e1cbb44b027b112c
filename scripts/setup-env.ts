// Create or check the .env of a target (local development or the server) against the app's env schema
// (aidd.yml `env:`, or the variables its compose files reference).
// Flags and the environment answer first; on a terminal a walkthrough asks for whatever is still
// missing or invalid. Secret values are never printed, and never accepted on the command line.
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as prompts from '@clack/prompts';
import { answered as answerOrCancel, cancelled } from '../lib/core/prompts.ts';
import { EXIT, isInteractive, runScript, stringValue, UsageError, type ScriptSpec, type Values } from '../lib/core/cli.ts';
import { backupEnvFile, readEnvFile, SECRET_FILE_MODE, updateEnvText, writeEnvFile, type EnvFile } from '../lib/env/env-file.ts';
import {
  checkValue,
  displayValue,
  findVariable,
  newFileValues,
  renderEnvText,
  renderTemplate,
  renderVariableBlock,
  TARGETS,
  validate,
  valuesFromEnvironment,
  variablesIn,
  type Problem,
  type EnvSchema,
  type Target,
  type VariableSpec,
} from '../lib/env/env-schema.ts';
import { createLogger, printJson, type Logger } from '../lib/core/log.ts';
import { registerSecret } from '../lib/core/secrets.ts';
import { loadComposeApp, type ComposeApp } from '../lib/app/compose.ts';
import { DEFAULT_COMPOSE_FILE } from '../lib/app/target.ts';
import { appEnvSchema, templateFile } from '../lib/env/app-env.ts';

const spec: ScriptSpec = {
  name: 'setup-env',
  summary:
    "Create, complete or check the .env of a target from the app's env schema: the env: list of its aidd.yml,\n" +
    'or else the ${VAR} references of its compose files. Values come from --set, the\n' +
    'environment (a variable named like the setting answers it when the file lacks it or holds an invalid\n' +
    'value; with --from-env it always wins) and --generate; on a terminal a walkthrough asks for the rest.\n' +
    'Secrets are masked in every output and only accepted from the environment or a prompt, never argv.\n' +
    'A changed file keeps a timestamped backup (FILE.bak-YYYYmmddTHHMMSS) and is written with mode 0600.\n' +
    'Default files: local -> .env next to the compose file; production -> .env.production here.\n' +
    'Cancelling the walkthrough (Ctrl-C) exits 130 and writes nothing.',
  options: {
    target: { type: 'string', value: 'local|production', env: 'AIDD_ENV_TARGET', help: 'Which file: local development or the server (default local).' },
    file: { type: 'string', value: 'PATH', help: "The file to create or check (default: the target's usual path)." },
    compose: { type: 'string', multiple: true, value: 'PATH', env: 'AIDD_COMPOSE_FILE', help: 'Compose file of the app: its aidd.yml has the env schema, its directory the local .env (default: AIDD Bot); repeat to merge several in order.' },
    check: { type: 'boolean', help: 'Only validate the file: list each missing or invalid variable, exit 1 if any.' },
    'from-env': { type: 'boolean', help: "Take every target variable set in the environment, over the file's values (CI)." },
    set: { type: 'string', multiple: true, value: 'NAME=VALUE', help: 'Set a non-secret variable; repeatable.' },
    generate: { type: 'boolean', help: 'Generate missing or invalid values of variables marked generate: in aidd.yml, without asking.' },
    'write-templates': { type: 'boolean', help: "Write the app's .env.example and .env.production.example next to its compose file." },
    'dry-run': { type: 'boolean', help: 'Show what would change (secrets masked); write nothing.' },
    yes: { type: 'boolean', short: 'y', help: 'On a terminal, write without confirming the summary.' },
    json: { type: 'boolean', help: 'Print the result as JSON on stdout (never prompts).' },
  },
  examples: [
    'npx tsx scripts/setup-env.ts',
    'npx tsx scripts/setup-env.ts --target production --check --json',
    'DB_PASSWORD=... npx tsx scripts/setup-env.ts --compose ../shop/docker-compose.yml --target production --set SHOP_NAME=acme',
    'npx tsx scripts/setup-env.ts --compose ../shop/docker-compose.yml --write-templates',
    'npx tsx scripts/setup-env.ts --target production --from-env --generate   # in CI, from the job secrets',
  ],
};

/** The app's schema; set once, before anything reads it. */
let schema: EnvSchema;

interface Change {
  name: string;
  action: 'add' | 'change';
}

await runScript(spec, async (values) => {
  const app = await loadComposeApp((values.compose as string[] | undefined) ?? DEFAULT_COMPOSE_FILE);
  schema = appEnvSchema(app);
  if (values['write-templates'] === true) return writeTemplates(app);
  const target = parseTarget(stringValue(values, 'target') ?? 'local');
  const file = path.resolve(stringValue(values, 'file') ?? defaultFile(target, app));
  const json = values.json === true;
  const logger = createLogger({ prefix: spec.name, quiet: json });
  const existing = readEnvFile(file);
  registerSecretValues(existing?.values ?? {});
  registerSecretValues(process.env as Record<string, string>);

  if (values.check === true) {
    const conflicting = ['set', 'from-env', 'generate'].filter((name) => values[name] !== undefined && values[name] !== false);
    if (conflicting.length > 0) throw new UsageError(`--check only reads the file; drop --${conflicting.join(', --')}`);
    return check(target, file, existing, json, logger);
  }
  return setUp(target, file, existing, values, json, logger);
});

/** The committed templates, rendered from the schema; unchanged ones are left alone. */
function writeTemplates(app: ComposeApp): number {
  for (const target of TARGETS) {
    const file = templateFile(app, target);
    const text = renderTemplate(schema, target);
    const current = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    if (current === text) continue;
    writeFileSync(file, text);
    process.stdout.write(`wrote ${shown(file)}\n`);
  }
  return EXIT.ok;
}

function parseTarget(value: string): Target {
  const target = TARGETS.find((candidate) => candidate === value);
  if (!target) throw new UsageError(`--target ${value} is not one of ${TARGETS.join(', ')}`);
  return target;
}

function defaultFile(target: Target, app: ComposeApp): string {
  return target === 'local' ? path.join(app.dir, '.env') : '.env.production';
}

/** Paths as a person would type them: relative below the current directory, absolute elsewhere. */
function shown(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative.startsWith('..') ? file : relative;
}

function registerSecretValues(values: Record<string, string | undefined>): void {
  for (const variable of schema.variables) {
    if (variable.secret) for (const name of [variable.name, ...(variable.aliases ?? [])]) registerSecret(values[name]);
  }
}

function check(target: Target, file: string, existing: EnvFile | undefined, json: boolean, logger: Logger): number {
  if (!existing) throw new UsageError(`${shown(file)} does not exist; create it with: npx tsx scripts/setup-env.ts --target ${target} --file ${shown(file)}`);
  const problems: Problem[] = [
    ...existing.malformed.map((line) => ({ name: `line ${line.line}`, line: line.line, reason: line.reason })),
    ...validate(existing.values, schema, target),
  ];
  if (existing.mode & 0o077) logger.warn(`${shown(file)} is mode 0${existing.mode.toString(8)}: others can access it; run setup-env without --check (or chmod 600) to fix it`);
  const ok = problems.length === 0;
  if (json) printJson({ ok, target, file, problems });
  else if (ok) process.stdout.write(`${shown(file)}: ok for ${target}\n`);
  else process.stdout.write(problems.map((problem) => `${problem.name}: ${problem.reason}\n`).join(''));
  if (ok) return EXIT.ok;
  process.stderr.write(`setup-env: error: ${shown(file)} is not ready for ${target}: ${problems.map((problem) => problem.name).join(', ')}\n`);
  return EXIT.failed;
}

/** --set NAME=VALUE pairs: known, non-secret variables of the target with valid values. */
function parseSetFlags(pairs: string[], target: Target): Record<string, string> {
  const values: Record<string, string> = {};
  for (const pair of pairs) {
    const separator = pair.indexOf('=');
    const name = separator > 0 ? pair.slice(0, separator) : pair;
    const value = pair.slice(separator + 1);
    const variable = findVariable(schema, name);
    if (variable?.secret) {
      registerSecret(value);
      throw new UsageError(`--set ${name}: ${name} is secret and would show in the process list and shell history; set the ${name} environment variable instead`);
    }
    if (separator <= 0) throw new UsageError(`--set ${pair} is not NAME=VALUE`);
    if (!variable || !variable.scopes.includes(target)) throw new UsageError(`--set ${name}: not a variable of the ${target} target; its variables: ${variablesIn(schema, target).map((spec) => spec.name).join(', ')}`);
    values[name] = value;
  }
  return values;
}

function howToSupply(variable: VariableSpec): string {
  const ways = variable.secret ? [`set env ${variable.name}`] : [`pass --set ${variable.name}=VALUE`, `set env ${variable.name}`];
  if (variable.generate) ways.push('pass --generate');
  return ways.join(' or ');
}

function answered<T>(answer: T): Exclude<T, symbol> {
  return answerOrCancel(answer, 'nothing was written');
}

async function ask(variable: VariableSpec, target: Target, next: Record<string, string>, reason: string): Promise<string> {
  prompts.log.info(`${variable.name}: ${variable.description}${variable.source ? ` Get it: ${variable.source}` : ''}`);
  if (next[variable.name]) prompts.log.warn(`${variable.name}: ${reason}`);
  const validateAnswer = (value: string | undefined) => checkValue(schema, variable, target, { ...next, [variable.name]: value ?? '' });
  if (!variable.secret) {
    return answered(
      await prompts.text({
        message: variable.name,
        initialValue: next[variable.name] || variable.default || '',
        placeholder: variable.override?.example,
        validate: validateAnswer,
      }),
    );
  }
  if (variable.generate) {
    const choice = answered(
      await prompts.select({
        message: `${variable.name}: generate a strong random value?`,
        options: [
          { value: 'generate', label: 'Generate one', hint: '32 random characters' },
          { value: 'type', label: 'Type my own' },
        ],
      }),
    );
    if (choice === 'generate') return variable.generate();
  }
  return answered(await prompts.password({ message: variable.name, validate: validateAnswer }));
}

function summaryLines(target: Target, next: Record<string, string>, changes: Change[]): string {
  const marks = new Map(changes.map((change) => [change.name, change.action === 'add' ? '+' : '~']));
  const width = Math.max(...variablesIn(schema, target).map((variable) => variable.name.length));
  return variablesIn(schema, target)
    .filter((variable) => next[variable.name] !== undefined)
    .map((variable) => `${marks.get(variable.name) ?? ' '} ${variable.name.padEnd(width)}  ${displayValue(variable, next[variable.name]!)}`)
    .join('\n');
}

async function setUp(target: Target, file: string, existing: EnvFile | undefined, values: Values, json: boolean, logger: Logger): Promise<number> {
  const interactive = isInteractive() && !json;
  const dryRun = values['dry-run'] === true;
  if (existing?.malformed.length) {
    const [first] = existing.malformed;
    throw new UsageError(`${shown(file)} line ${first!.line}: ${first!.reason}; fix it first (--check lists every problem)`);
  }
  if (!existing && !existsSync(path.dirname(file))) throw new UsageError(`directory ${shown(path.dirname(file))} does not exist; create it or pass --file PATH`);
  for (const problem of validate(existing?.values ?? {}, schema, target)) {
    if (!findVariable(schema, problem.name)?.scopes.includes(target)) throw new UsageError(`${shown(file)} holds ${problem.name}, ${problem.reason}; remove that line`);
  }

  const environment = valuesFromEnvironment(schema, target, process.env);
  // A new file has none of the variables yet: the environment answers before the defaults fill them in.
  const supplied: [string, Record<string, string>][] = [
    [values['from-env'] === true ? 'the environment (--from-env)' : 'the environment', values['from-env'] === true || !existing ? environment : {}],
    ['--set', parseSetFlags((values.set as string[] | undefined) ?? [], target)],
  ];
  const next: Record<string, string> = { ...(existing?.values ?? newFileValues(schema, target)) };
  for (const [source, answers] of supplied) {
    for (const [name, value] of Object.entries(answers)) {
      next[name] = value;
      const reason = checkValue(schema, findVariable(schema, name)!, target, next);
      if (reason) throw new UsageError(`${name} from ${source}: ${reason}`);
    }
  }

  if (interactive) prompts.intro(`setup-env: ${target} file ${shown(file)}`);
  const unresolved: string[] = [];
  for (const variable of variablesIn(schema, target)) {
    const reason = checkValue(schema, variable, target, next);
    if (!reason) continue;
    const fromEnvironment = environment[variable.name];
    if (fromEnvironment !== undefined) {
      const invalid = checkValue(schema, variable, target, { ...next, [variable.name]: fromEnvironment });
      if (invalid) throw new UsageError(`${variable.name} from the environment: ${invalid}`);
      next[variable.name] = fromEnvironment;
    } else if (variable.generate && values.generate === true) {
      next[variable.name] = variable.generate();
    } else if (interactive) {
      next[variable.name] = await ask(variable, target, next, reason);
    } else {
      unresolved.push(`${variable.name} (${reason}; ${howToSupply(variable)})`);
      continue;
    }
    if (variable.secret) registerSecret(next[variable.name]);
  }
  if (unresolved.length > 0) throw new UsageError(`${shown(file)} cannot be completed without a terminal: ${unresolved.join(', ')}`);

  // Schema order, so summaries read like the template; other names the file holds never change.
  const changes: Change[] = variablesIn(schema, target)
    .map((variable) => variable.name)
    .filter((name) => next[name] !== undefined && next[name] !== existing?.values[name])
    .map((name) => ({ name, action: existing && name in existing.values ? 'change' : 'add' }));
  const modeTooWide = existing !== undefined && (existing.mode & 0o077) !== 0;
  const result = { ok: true, target, file, dryRun, written: false, backup: null as string | null, modeFixed: false, changes };
  const finish = (message: string): number => {
    if (interactive) prompts.outro(message);
    else logger.step(message);
    if (json) printJson(result);
    return EXIT.ok;
  };

  if (changes.length === 0) {
    if (modeTooWide && !dryRun) {
      chmodSync(file, SECRET_FILE_MODE);
      result.modeFixed = true;
    }
    const modeNote = modeTooWide ? `; mode was 0${existing!.mode.toString(8)}, ${dryRun ? 'would be set' : 'set'} to 0600` : '';
    return finish(`${shown(file)} is complete for ${target}: nothing to change${modeNote}`);
  }

  if (interactive) {
    prompts.note(summaryLines(target, next, changes), `${existing ? 'Changes to' : 'New file'} ${shown(file)} (+ added, ~ changed; secrets masked)`);
    if (!dryRun && values.yes !== true) {
      const write = answered(await prompts.confirm({ message: `Write ${shown(file)}${existing ? ' (the current file is backed up first)' : ''}?` }));
      if (!write) cancelled('nothing was written');
    }
  } else if (!json) {
    process.stdout.write(changes.map((change) => `${change.action === 'add' ? '+' : '~'} ${change.name}=${displayValue(findVariable(schema, change.name), next[change.name]!)}\n`).join(''));
  }
  if (dryRun) return finish(`dry run: ${changes.length} change(s) to ${shown(file)}; nothing was written`);

  const changed = Object.fromEntries(changes.map((change) => [change.name, next[change.name]!]));
  const text = existing
    ? updateEnvText(existing, existing.text, changed, (name) => renderVariableBlock(findVariable(schema, name)!, target, changed[name]))
    : renderEnvText(schema, target, next);
  result.backup = existing ? backupEnvFile(file) : null;
  writeEnvFile(file, text);
  result.written = true;
  result.modeFixed = modeTooWide;
  return finish(`wrote ${shown(file)} (mode 0600, ${changes.length} change(s))${result.backup ? `; backup: ${shown(result.backup)}` : ''}`);
}

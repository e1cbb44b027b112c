// The mechanism behind every env schema (an app's, from its aidd.yml, and the toolkit's own CI variables): what a variable description holds, the format checks, the
// generators, validation of a set of values, and the templates and docs table rendered from the schema.
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { formatEntry } from './env-file.ts';

export const TARGETS = ['local', 'production'] as const;
/** A file setup-env writes: local development or the server. */
export type Target = (typeof TARGETS)[number];
/** Where a variable is used: one of the files, or the CI/deploy environment (never written to a file). */
export type Scope = Target | 'ci';

export interface Format {
  /** What a valid value looks like, for templates, docs and prompts. */
  describe: string;
  /** Why the value is invalid, or undefined when it is valid. Never quotes the value: it may be a secret. */
  check(value: string, scope: Scope): string | undefined;
}

export interface VariableSpec {
  name: string;
  /** Heading the variable is listed under in templates. */
  group: string;
  /** What it is, in one line. */
  description: string;
  /** Where to get a value, when that is not obvious. */
  source?: string;
  secret: boolean;
  /** The files (local, production) or the CI environment (ci) that use it. */
  scopes: Scope[];
  /** Where a value must be set. */
  requiredIn: Scope[];
  /** Also required wherever it is used when another variable has this value. */
  requiredWhen?: { name: string; equals: string };
  format: Format;
  /** The value the app uses when the variable is unset. */
  default?: string;
  /** Written into a target's template instead of the default, e.g. an offline mode for local development. */
  templateValue?: Partial<Record<Target, string>>;
  /** An optional override: commented out in templates, where it shows this example. */
  override?: { example: string };
  /** Makes a strong value, so nobody has to invent one. */
  generate?: () => string;
  /** Other environment variables that supply the value when this one is unset (CI aliases). */
  aliases?: string[];
}

export interface EnvSchema {
  variables: VariableSpec[];
  /** Comment lines at the top of each target's file. */
  headers: Record<Target, string[]>;
  /** Comment lines introducing the CI variables, which the production template documents commented out. */
  ciHeader: string[];
}

export interface Problem {
  /** A variable name, or `line N` for a line that names none. */
  name: string;
  /** Never contains the value. */
  reason: string;
  line?: number;
}

export const MASK = '********';

export function pattern(describe: string, regex: RegExp): Format {
  return { describe, check: (value) => (regex.test(value) ? undefined : `not ${describe}`) };
}

const PLACEHOLDER = /change-?me|example|placeholder|^password$|secret/i;

/** Format checks shared by every schema. */
export const formats = {
  text: pattern('any value on one line', /^[^\n]*$/),
  url: {
    describe: 'an http:// or https:// URL',
    check(value) {
      try {
        const url = new URL(value);
        return ['http:', 'https:'].includes(url.protocol) && url.hostname !== '' ? undefined : 'not an http:// or https:// URL';
      } catch {
        return 'not an http:// or https:// URL';
      }
    },
  } satisfies Format,
  port: {
    describe: 'a TCP port (1-65535)',
    check: (value) => (/^\d{1,5}$/.test(value) && Number(value) >= 1 && Number(value) <= 65535 ? undefined : 'not a TCP port (1-65535)'),
  } satisfies Format,
  positiveInteger: pattern('a positive whole number', /^[1-9]\d*$/),
  lowercaseOwner: pattern(
    'a lowercase registry namespace (a-z, 0-9, and . _ - between them; / for nested)',
    /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/,
  ),
  password: {
    describe: 'a password of 16+ characters in production (8+ locally), not a template placeholder',
    check(value, scope) {
      const minimum = scope === 'local' ? 8 : 16;
      if (value.length < minimum) return `too short: ${scope} needs ${minimum} or more characters`;
      if (scope !== 'local' && PLACEHOLDER.test(value)) return 'looks like a template placeholder, not a real password';
      if (new Set(value).size < 6) return 'too weak: fewer than 6 different characters';
      return undefined;
    },
  } satisfies Format,
  imageDigest: pattern('a digest pin: @sha256: and 64 lowercase hex digits', /^@sha256:[0-9a-f]{64}$/),
  ipAddress: { describe: 'an IP address', check: (value) => (isIP(value) ? undefined : 'not an IP address') } satisfies Format,
  host: {
    describe: 'a host name or IP address',
    check: (value) => (isIP(value) || /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(value) ? undefined : 'not a host name or IP address'),
  } satisfies Format,
  registryHost: pattern('a registry host, optionally with :port (e.g. ghcr.io)', /^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::\d{1,5})?$/),
  imageReference: pattern(
    'an image reference (e.g. postgres:16-alpine, ghcr.io/acme/api@sha256:...)',
    /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::\d{1,5})?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/,
  ),
  imageTag: pattern('an image tag (letters, digits, _ . -; up to 128)', /^[\w][\w.-]{0,127}$/),
  identifier: pattern('a name of letters, digits and _ (not starting with a digit)', /^[A-Za-z_][A-Za-z0-9_]{0,62}$/),
  unixUser: pattern('a user name (lowercase letters, digits, _ -)', /^[a-z_][a-z0-9_-]{0,31}$/),
  userName: pattern('a name without spaces', /^\S+$/),
  absolutePath: pattern('an absolute path without spaces', /^\/\S*$/),
  remotePath: pattern(
    'an absolute path, or one under the home directory (~/...), of letters, digits and . _ - @ + /, without ..',
    /^~?\/(?!(?:.*\/)?\.\.(?:\/|$))[\w.@+/-]*$/,
  ),
  composeProject: pattern('a compose project name (lowercase letters, digits, _ -)', /^[a-z0-9][a-z0-9_-]*$/),
  serviceName: pattern('a compose service name (letters, digits, _ . -)', /^[A-Za-z0-9][A-Za-z0-9_.-]*$/),
  revision: pattern('a revision: a commit SHA or a name of letters, digits, _ . - (up to 128)', /^[A-Za-z0-9][\w.-]{0,127}$/),
  releaseId: pattern('a release id, as --history lists them (letters, digits, _ . -)', /^[A-Za-z0-9][\w.-]{0,127}$/),
  backupFile: pattern('a backup file name, RELEASE.EXT as deploy reports and --status show it', /^[A-Za-z0-9][\w.-]{0,127}\.[a-z0-9]+$/),
  token: pattern('a token of 8 or more characters without spaces', /^\S{8,}$/),
  privateKey: pattern('a private key, from -----BEGIN ... PRIVATE KEY----- to its END line', /^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[\s\S]+\n-----END [A-Z ]*PRIVATE KEY-----\s*$/),
  knownHosts: {
    describe: 'known_hosts lines (host key-type key)',
    check(value) {
      const entries = value.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('#'));
      return entries.length > 0 && entries.every((line) => line.trim().split(/\s+/).length >= 3) ? undefined : 'not known_hosts lines (host key-type key)';
    },
  } satisfies Format,
} satisfies Record<string, Format>;

export function oneOf(...choices: string[]): Format {
  const describe = `one of ${choices.join(', ')}`;
  return { describe, check: (value) => (choices.includes(value) ? undefined : `not ${describe}`) };
}

/** 24 random bytes as base64url: 32 characters, safe unquoted in any .env and shell. */
export function generateSecret(): string {
  return randomBytes(24).toString('base64url');
}

export function variablesIn(schema: EnvSchema, scope: Scope): VariableSpec[] {
  return schema.variables.filter((spec) => spec.scopes.includes(scope));
}

export function findVariable(schema: EnvSchema, name: string): VariableSpec | undefined {
  return schema.variables.find((spec) => spec.name === name);
}

/** The value the app sees: the one set, else the default. */
function effectiveValue(schema: EnvSchema, name: string, values: Record<string, string>): string | undefined {
  const value = values[name];
  return value !== undefined && value !== '' ? value : findVariable(schema, name)?.default;
}

function isRequired(schema: EnvSchema, spec: VariableSpec, scope: Scope, values: Record<string, string>): boolean {
  if (!spec.scopes.includes(scope)) return false;
  if (spec.requiredIn.includes(scope)) return true;
  return spec.requiredWhen !== undefined && effectiveValue(schema, spec.requiredWhen.name, values) === spec.requiredWhen.equals;
}

/** Why this value of the variable is not acceptable in `scope`, given the other values; undefined if it is. */
export function checkValue(schema: EnvSchema, spec: VariableSpec, scope: Scope, values: Record<string, string>): string | undefined {
  const value = values[spec.name] ?? '';
  if (value === '') {
    if (!isRequired(schema, spec, scope, values)) return undefined;
    return spec.requiredWhen && !spec.requiredIn.includes(scope) ? `missing: required when ${spec.requiredWhen.name}=${spec.requiredWhen.equals}` : 'missing: required';
  }
  return spec.format.check(value, scope);
}

/** Every missing or invalid variable of `scope`, and CI-only variables that have no place in a file. */
export function validate(values: Record<string, string>, schema: EnvSchema, scope: Scope): Problem[] {
  const problems: Problem[] = [];
  for (const spec of variablesIn(schema, scope)) {
    const reason = checkValue(schema, spec, scope, values);
    if (reason) problems.push({ name: spec.name, reason });
  }
  if (scope !== 'ci') {
    for (const spec of variablesIn(schema, 'ci')) {
      if (!spec.scopes.includes(scope) && values[spec.name]) problems.push({ name: spec.name, reason: 'a CI/deploy variable: keep it in the CI secrets, not in this file' });
    }
  }
  return problems;
}

/** Values of `scope` found in an environment, CI aliases included; empty strings count as unset. */
export function valuesFromEnvironment(schema: EnvSchema, scope: Scope, env: NodeJS.ProcessEnv): Record<string, string> {
  const values: Record<string, string> = {};
  for (const spec of variablesIn(schema, scope)) {
    const value = [spec.name, ...(spec.aliases ?? [])].map((name) => env[name]).find((candidate) => candidate !== undefined && candidate !== '');
    if (value !== undefined) values[spec.name] = value;
  }
  return values;
}

/** What a person may see of a value: secrets are masked, whatever their length. */
export function displayValue(spec: VariableSpec | undefined, value: string): string {
  if (value === '') return '(empty)';
  return spec?.secret ? MASK : value;
}

/** The values a target's template shows. */
export function templateValues(schema: EnvSchema, target: Target): Record<string, string> {
  const values: Record<string, string> = {};
  for (const spec of variablesIn(schema, target)) {
    if (!spec.override) values[spec.name] = spec.templateValue?.[target] ?? spec.default ?? '';
  }
  return values;
}

/** A new file starts from the template, except that secret placeholders are never used as values. */
export function newFileValues(schema: EnvSchema, target: Target): Record<string, string> {
  return Object.fromEntries(Object.entries(templateValues(schema, target)).filter(([name]) => !findVariable(schema, name)?.secret));
}

function requirementText(spec: VariableSpec, scope: Scope): string {
  if (spec.requiredIn.includes(scope)) return 'yes';
  return spec.requiredWhen ? `when ${spec.requiredWhen.name}=${spec.requiredWhen.equals}` : 'no';
}

function defaultText(spec: VariableSpec): string {
  if (spec.default !== undefined) return spec.default;
  return spec.generate ? 'none (setup-env can generate one)' : 'none';
}

/** The comment lines describing a variable, then its `NAME=value` line (commented out for unset overrides). */
export function renderVariableBlock(spec: VariableSpec, scope: Scope, value: string | undefined): string {
  const aliases = spec.aliases ? ` Also read from ${spec.aliases.join(' or ')}.` : '';
  const lines = [
    `# ${spec.description}`,
    ...(spec.source ? [`# Get it: ${spec.source}`] : []),
    `# Secret: ${spec.secret ? 'yes' : 'no'}. Required: ${requirementText(spec, scope)}. Default: ${defaultText(spec)}. Format: ${spec.format.describe}.${aliases}`,
  ];
  if (scope === 'ci') lines.push(`#${spec.name}=${spec.default ?? ''}`);
  else if (spec.override && value === undefined) lines.push(`#${spec.name}=${spec.override.example}`);
  else lines.push(formatEntry(spec.name, value ?? ''));
  return lines.join('\n');
}

function renderGroups(specs: VariableSpec[], render: (spec: VariableSpec) => string): string[] {
  const out: string[] = [];
  let group: string | undefined;
  for (const spec of specs) {
    if (spec.group !== group) {
      group = spec.group;
      out.push('', `# == ${group} ==`);
    }
    out.push(render(spec));
  }
  return out;
}

/** A target's .env text: header, then every variable of the target with its description and value. */
export function renderEnvText(schema: EnvSchema, target: Target, values: Record<string, string>): string {
  const header = schema.headers[target].map((line) => `# ${line}`);
  return [...header, ...renderGroups(variablesIn(schema, target), (spec) => renderVariableBlock(spec, target, values[spec.name]))].join('\n') + '\n';
}

/** The committed template of a target; production's also documents the CI variables, commented out. */
export function renderTemplate(schema: EnvSchema, target: Target): string {
  const text = renderEnvText(schema, target, templateValues(schema, target));
  if (target !== 'production') return text;
  const ci = variablesIn(schema, 'ci').filter((spec) => !spec.scopes.includes(target));
  const header = ['', ...schema.ciHeader.map((line) => `# ${line}`)];
  return text + [...header, ...renderGroups(ci, (spec) => renderVariableBlock(spec, 'ci', undefined))].join('\n') + '\n';
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The markdown table of a scope's variables, for the guides. */
export function renderVariableTable(schema: EnvSchema, scope: Scope): string {
  const rows = variablesIn(schema, scope).map((spec) => {
    const what = [spec.description, spec.source ? `Get it: ${spec.source}` : ''].filter(Boolean).join(' ');
    return `| \`${spec.name}\` | ${cell(requirementText(spec, scope))} | ${spec.secret ? 'yes' : 'no'} | ${cell(defaultText(spec))} | ${cell(spec.format.describe)} | ${cell(what)} |`;
  });
  return ['| Variable | Required | Secret | Default | Format | What it is |', '|---|---|---|---|---|---|', ...rows].join('\n');
}

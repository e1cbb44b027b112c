// An app's env schema: the variables its aidd.yml declares under `env:`, or, without that list, the ones
// its compose files reference; plus the toolkit's own CI variables, which the production template
// documents commented out. setup-env, its templates and ssh-deploy's upload check all use this one.
import path from 'node:path';
import type { ComposeApp } from '../app/compose.ts';
import type { RawVariable } from '../app/settings.ts';
import { readEnvFile } from './env-file.ts';
import { formats, generateSecret, oneOf, pattern, type EnvSchema, type Format, type Target, type VariableSpec } from './env-schema.ts';
import { TOOLKIT_CI_VARIABLES } from './toolkit-variables.ts';

/** The committed templates of an app, next to its compose file. */
export const TEMPLATE_NAMES: Record<Target, string> = { local: '.env.example', production: '.env.production.example' };

export function templateFile(app: Pick<ComposeApp, 'dir'>, target: Target): string {
  return path.join(app.dir, TEMPLATE_NAMES[target]);
}

/** Conservative on purpose: a name that may hold a credential is masked everywhere. */
const SECRET_NAME = /PASSWORD|TOKEN|SECRET|KEY/i;

function kebabToCamel(name: string): string {
  return name.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

function formatOf(raw: RawVariable['format']): Format {
  if (raw === undefined) return formats.text;
  if (typeof raw === 'string') return formats[kebabToCamel(raw) as keyof typeof formats];
  if ('one-of' in raw) return oneOf(...raw['one-of']);
  return pattern(raw.describe, new RegExp(raw.pattern));
}

/** A variable as aidd.yml declares it (settings.ts has checked its shape). */
export function declaredVariable(raw: RawVariable): VariableSpec {
  const scopes = raw.targets ?? ['local', 'production'];
  return {
    name: raw.name,
    group: raw.group ?? 'Settings',
    description: raw.description,
    ...(raw.source ? { source: raw.source } : {}),
    secret: raw.secret ?? false,
    scopes,
    requiredIn: raw.required === true ? scopes : raw.required ? raw.required : [],
    ...(raw['required-when'] ? { requiredWhen: raw['required-when'] } : {}),
    format: formatOf(raw.format),
    ...(raw.default !== undefined ? { default: raw.default } : {}),
    ...(raw.template ? { templateValue: raw.template } : {}),
    ...(raw['override-example'] !== undefined ? { override: { example: raw['override-example'] } } : {}),
    ...(raw.generate ? { generate: generateSecret } : {}),
    ...(raw.aliases ? { aliases: raw.aliases } : {}),
  };
}

interface InferredVariable {
  name: string;
  required: boolean;
  default?: string;
  /** The env_file it was read from, for one not interpolated but handed to the containers. */
  envFile?: string;
}

/**
 * Variables read from the compose files: their `${VAR}` references (required when any reference needs a
 * value) and the names in the services' `env_file:` files, which compose hands to the containers.
 */
export function inferredVariables(app: Pick<ComposeApp, 'dir' | 'variables' | 'services'>): VariableSpec[] {
  const byName = new Map<string, InferredVariable>();
  for (const reference of app.variables) {
    const known = byName.get(reference.name);
    byName.set(reference.name, {
      name: reference.name,
      required: (known?.required ?? false) || reference.required,
      ...((known?.default ?? reference.default) !== undefined ? { default: known?.default ?? reference.default } : {}),
    });
  }
  for (const envFile of new Set(app.services.flatMap((service) => service.envFiles))) {
    for (const name of Object.keys(readEnvFile(path.resolve(app.dir, envFile))?.values ?? {})) {
      if (!byName.has(name)) byName.set(name, { name, required: false, envFile });
    }
  }
  return [...byName.values()].map((variable) => ({
    name: variable.name,
    group: 'Variables of the compose files',
    description: variable.envFile ? `Passed to the containers from ${variable.envFile}.` : `Interpolated by compose as \${${variable.name}}.`,
    secret: SECRET_NAME.test(variable.name),
    scopes: ['local', 'production'],
    requiredIn: variable.required ? ['local', 'production'] : [],
    format: formats.text,
    ...(variable.default !== undefined ? { default: variable.default } : {}),
  }));
}

/** The app's variables plus the toolkit's CI ones; a name in both keeps the app's description and gains the CI scope. */
export function appEnvSchema(app: Pick<ComposeApp, 'dir' | 'config' | 'variables' | 'services'>): EnvSchema {
  const own = app.config.env ? app.config.env.map(declaredVariable) : inferredVariables(app);
  const variables: VariableSpec[] = own.map((spec) => {
    const ci = TOOLKIT_CI_VARIABLES.find((candidate) => candidate.name === spec.name);
    return ci ? { ...spec, scopes: [...spec.scopes, 'ci'], requiredIn: [...spec.requiredIn, ...ci.requiredIn] } : spec;
  });
  variables.push(...TOOLKIT_CI_VARIABLES.filter((ci) => !own.some((spec) => spec.name === ci.name)));
  const name = path.basename(app.dir);
  const source = app.config.env ? 'Rendered from the env: list of aidd.yml' : "Rendered from the compose files' ${VAR} references (aidd.yml declares no env: list)";
  const regenerate = `${source}; regenerate with: npx tsx scripts/setup-env.ts --compose COMPOSE_FILE --write-templates`;
  return {
    variables,
    headers: {
      local: [
        `${name} for local development: compose reads it as .env next to the compose file.`,
        'Create or check that file with: npx tsx scripts/setup-env.ts [--check]  (it keeps the file mode 0600).',
        'Values are literal; setup-env quotes the ones that need it.',
        regenerate,
      ],
      production: [
        `${name} on the server: ssh-deploy uploads it as the release's .env (mode 0600), which compose reads there.`,
        'Create or check it with: npx tsx scripts/setup-env.ts --target production [--check]  (writes .env.production).',
        'In CI: npx tsx scripts/setup-env.ts --target production --from-env  (values from the job environment).',
        regenerate,
      ],
    },
    ciHeader: [
      '== CI and deploy-time variables ==',
      'Set these as GitHub Actions secrets (or in the environment of the shell that deploys).',
      'They are listed here for reference only: never put them in the server .env.',
    ],
  };
}

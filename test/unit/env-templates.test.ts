// The reference app's templates, the docs table and its compose files must agree with the env: list of its
// aidd.yml. After editing it, regenerate: npx tsx scripts/setup-env.ts --write-templates (or run this test
// with --update, which also rewrites the guide's table).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadComposeApp } from '../../lib/app/compose.ts';
import { interpolationDefaults } from '../../lib/app/interpolate.ts';
import { appEnvSchema, templateFile } from '../../lib/env/app-env.ts';
import { parseEnvText } from '../../lib/env/env-file.ts';
import { renderTemplate, renderVariableTable, TARGETS, validate, variablesIn, type Target } from '../../lib/env/env-schema.ts';
import { DEFAULT_COMPOSE_FILE, DEFAULT_REGISTRY_COMPOSE_FILE, REPO_ROOT } from '../../lib/app/target.ts';

const app = await loadComposeApp(DEFAULT_COMPOSE_FILE);
const schema = appEnvSchema(app);
const GUIDE = path.join(REPO_ROOT, 'docs', 'guides', 'manual-deploy.md');
const TABLE_START = '<!-- env-table:start -->';
const TABLE_END = '<!-- env-table:end -->';
const COMPOSE_FILES: Record<Target, string> = {
  local: DEFAULT_COMPOSE_FILE,
  production: DEFAULT_REGISTRY_COMPOSE_FILE,
};

function template(target: Target): string {
  return readFileSync(templateFile(app, target), 'utf8');
}

/** Variable lines of a template, set or commented out, each with the comment lines just above it. */
function documentedVariables(text: string): { name: string; comments: string[] }[] {
  const lines = text.split('\n');
  const found: { name: string; comments: string[] }[] = [];
  lines.forEach((line, index) => {
    const name = /^#?([A-Z][A-Z0-9_]*)=/.exec(line)?.[1];
    if (!name) return;
    const comments: string[] = [];
    for (let above = index - 1; above >= 0 && /^# /.test(lines[above]!) && !/^# ==/.test(lines[above]!); above--) comments.unshift(lines[above]!);
    found.push({ name, comments });
  });
  return found;
}

describe('templates', () => {
  it.each(TARGETS)('the %s template is the one rendered from the schema', async (target) => {
    await expect(renderTemplate(schema, target)).toMatchFileSnapshot(templateFile(app, target));
  });

  it.each(TARGETS)('every variable in the %s template is in the schema and described, and every schema variable of it is there', (target) => {
    const documented = documentedVariables(template(target));
    for (const { name, comments } of documented) {
      const spec = schema.variables.find((candidate) => candidate.name === name);
      expect(spec, `${name} is in ${templateFile(app, target)} but not in the schema`).toBeDefined();
      expect(comments[0], name).toBe(`# ${spec!.description}`);
      expect(comments.at(-1), name).toMatch(/^# Secret: (yes|no)\. Required: .+\. Default: .+\. Format: .+\./);
    }
    const ciOnly = target === 'production' ? variablesIn(schema, 'ci').filter((spec) => !spec.scopes.includes(target)) : [];
    const expected = [...variablesIn(schema, target), ...ciOnly].map((spec) => spec.name);
    expect(documented.map((entry) => entry.name)).toEqual(expected);
  });

  it('together the templates document every schema variable', () => {
    const documented = new Set(TARGETS.flatMap((target) => documentedVariables(template(target)).map((entry) => entry.name)));
    expect(schema.variables.map((spec) => spec.name).filter((name) => !documented.has(name))).toEqual([]);
  });

  it('the local template is a working local .env; the production one lacks exactly the values only a person can give', () => {
    expect(validate(parseEnvText(template('local')).values, schema, 'local')).toEqual([]);
    expect(parseEnvText(template('local')).values).toMatchObject({ BOT_MODE: 'offline', API_PORT: '8000', FRONTEND_PORT: '3000', BIND_ADDRESS: '127.0.0.1' });
    expect(validate(parseEnvText(template('production')).values, schema, 'production').map((problem) => problem.name)).toEqual(['POSTGRES_PASSWORD', 'BOT_TOKEN', 'IMAGE_OWNER']);
  });
});

describe('compose files', () => {
  it.each(TARGETS)('the %s compose file uses exactly the schema variables of the target, with the same defaults', async (target) => {
    const { variables } = await loadComposeApp(COMPOSE_FILES[target]);
    expect([...new Set(variables.map((reference) => reference.name))].sort()).toEqual(variablesIn(schema, target).map((spec) => spec.name).sort());
    const composeDefaults = Object.entries(interpolationDefaults(variables)).filter(([, value]) => value !== '');
    const schemaDefaults = variablesIn(schema, target).filter((spec) => spec.default !== undefined).map((spec) => [spec.name, spec.default]);
    expect(Object.fromEntries(composeDefaults)).toEqual(Object.fromEntries(schemaDefaults));
  });
});

describe('the manual deploy guide', () => {
  it('lists every production variable in the table rendered from the schema', async () => {
    const guide = readFileSync(GUIDE, 'utf8');
    const start = guide.indexOf(TABLE_START);
    const end = guide.indexOf(TABLE_END);
    expect(start, `${GUIDE} lacks the ${TABLE_START} marker`).toBeGreaterThan(-1);
    expect(end, `${GUIDE} lacks the ${TABLE_END} marker after the start marker`).toBeGreaterThan(start);
    const rendered = `${guide.slice(0, start + TABLE_START.length)}\n${renderVariableTable(schema, 'production')}\n${guide.slice(end)}`;
    await expect(rendered).toMatchFileSnapshot(GUIDE);
  });
});

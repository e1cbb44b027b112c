// Compose's interpolation. Expected values for the syntax docker-compose 1.29 knows were compared with
// docker-compose 1.29.2 (`docker-compose config` on test/fixtures/compose/interpolation); 1.29 has neither
// nested defaults (it turns `${A:-${B:-x}}` into the text `${B:-x}` when A is unset, and `hello}` when A
// is set) nor `:+`/`+` (an "Invalid interpolation format" error): those cases follow the Compose spec and
// Compose v2.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { EXIT } from '../../lib/core/cli.ts';
import { interpolate, interpolateDocument, interpolationDefaults, variableReferences } from '../../lib/app/interpolate.ts';
import { REPO_ROOT } from '../../lib/app/target.ts';
import { thrown } from './thrown.ts';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'compose', 'interpolation');
const fixture = (name: string) => parseYaml(readFileSync(path.join(FIXTURES, name), 'utf8')) as Record<string, unknown>;

describe('interpolation of one string', () => {
  const vars = { SET: 'value', EMPTY: '', OWNER: 'acme' };

  it('substitutes $VAR and ${VAR}, a missing one as empty', () => {
    expect(interpolate('$SET/${SET}-$MISSING-${MISSING}', vars, 'x')).toBe('value/value--');
    expect(interpolate('$SET_b-c', { SET_b: 'v' }, 'x')).toBe('v-c');
  });

  it('takes :- for unset or empty, - for unset only', () => {
    expect(interpolate('${MISSING:-python:3.12-slim}', vars, 'x')).toBe('python:3.12-slim');
    expect(interpolate('${EMPTY:-fallback}', vars, 'x')).toBe('fallback');
    expect(interpolate('${EMPTY-fallback}', vars, 'x')).toBe('');
    expect(interpolate('${MISSING-fallback}', vars, 'x')).toBe('fallback');
    expect(interpolate('${SET:-fallback}', vars, 'x')).toBe('value');
  });

  it('writes $$ as $, and never reads what follows as a variable', () => {
    expect(interpolate('$${SET} $$SET ${MISSING}', vars, 'x')).toBe('${SET} $SET ');
  });

  it('nests defaults, as the spec and Compose v2 do', () => {
    expect(interpolate('${A:-${B:-x}}', {}, 'x')).toBe('x');
    expect(interpolate('${A:-${B:-x}}', { B: 'b' }, 'x')).toBe('b');
    expect(interpolate('${A:-${B:-x}}', { A: 'hello' }, 'x')).toBe('hello');
    expect(interpolate('${A:-${B}}', { B: 'b' }, 'x')).toBe('b');
    expect(interpolate('${A:-${B}/c}-d', { B: 'b' }, 'x')).toBe('b/c-d');
    expect(interpolate('${A:-{x}}', {}, 'x')).toBe('{x}');
  });

  it('takes :+ when set and non-empty, + when set', () => {
    expect(interpolate('${OWNER:+owner is set}', vars, 'x')).toBe('owner is set');
    expect(interpolate('${EMPTY:+no}', vars, 'x')).toBe('');
    expect(interpolate('${EMPTY+yes}', vars, 'x')).toBe('yes');
    expect(interpolate('${MISSING+no}', vars, 'x')).toBe('');
    expect(interpolate('${OWNER:+--owner=${OWNER}}', vars, 'x')).toBe('--owner=acme');
  });

  it('names a required variable that is missing: :? unset or empty, ? unset only', () => {
    expect(() => interpolate('${TOKEN:?set TOKEN}', {}, 'compose.yml services.api.build.args')).toThrow(
      'compose.yml services.api.build.args: variable TOKEN is not set (set TOKEN)',
    );
    expect(thrown(() => interpolate('${EMPTY:?}', vars, 'f a.b')).message).toBe('f a.b: variable EMPTY is empty (required)');
    expect(thrown(() => interpolate('${TOKEN?err}', {}, 'x')).exitCode).toBe(EXIT.usage);
    expect(interpolate('${EMPTY?set EMPTY}', vars, 'x')).toBe('');
    expect(interpolate('${SET:?set SET}', vars, 'x')).toBe('value');
  });

  it('reads a missing required variable as empty when the caller asks', () => {
    expect(interpolate('a${TOKEN:?set TOKEN}b', {}, 'x', { onMissing: 'empty' })).toBe('ab');
    expect(interpolate('${TOKEN?err}', {}, 'x', { onMissing: 'empty' })).toBe('');
  });

  it('evaluates a default only when it is used, so an unused required variable does not fail', () => {
    expect(interpolate('${SET:-${TOKEN:?set TOKEN}}', vars, 'x')).toBe('value');
    expect(() => interpolate('${MISSING:-${TOKEN:?set TOKEN}}', vars, 'x')).toThrow('variable TOKEN is not set (set TOKEN)');
  });

  it.each(['a $ b', 'cost$', '${A:x}', '${1A}', '${A', '$1', 'x$-y', '${A:-x'])('refuses %j as compose does (exit 2, one line)', (text) => {
    const error = thrown(() => interpolate(text, vars, 'compose.yml services.app.image'));
    expect(error.exitCode).toBe(EXIT.usage);
    expect(error.message).toBe(`compose.yml services.app.image: invalid interpolation ${JSON.stringify(text)}; write $$ for a literal $`);
  });
});

describe('interpolation of a document', () => {
  it('substitutes every string value and leaves keys and other values alone (docker-compose 1.29.2)', () => {
    const document = interpolateDocument(fixture('docker-compose.yml'), { OWNER: 'acme', EMPTY: '' }, 'docker-compose.yml');
    expect(document).toEqual({
      services: {
        app: {
          image: 'ghcr.io/acme/app:latest',
          environment: {
            EMPTY_SOFT: 'soft',
            EMPTY_HARD: '',
            UNSET_HARD: 'hard',
            // 1.29 prints 'price: $$5, $${NOT_A_VARIABLE}': its config output escapes $ again.
            LITERAL: 'price: $5, ${NOT_A_VARIABLE}',
            SET_REQUIRED: 'acme',
            EMPTY_ALLOWED: '',
            PORT_NUMBER: 8000,
          },
        },
      },
    });
  });

  it('follows the spec where 1.29 cannot: nesting and alternatives', () => {
    const document = interpolateDocument(fixture('spec-only.yml'), { OWNER: 'acme', EMPTY: '' }, 'spec-only.yml') as { services: { app: unknown } };
    expect(document.services.app).toEqual({
      image: 'ghcr.io/app',
      environment: { ALTERNATIVE: 'owner is set', NO_ALTERNATIVE: '', EMPTY_ALTERNATIVE: 'set even when empty' },
    });
  });

  it('names the file, the key path and the variable of a missing required one', () => {
    const error = thrown(() => interpolateDocument(fixture('required.yml'), {}, '/app/required.yml'));
    expect(error.exitCode).toBe(EXIT.usage);
    // 1.29: Missing mandatory value for "environment" option interpolating ... in service "app": set TOKEN in .env
    expect(error.message).toBe('/app/required.yml services.app.environment.TOKEN: variable TOKEN is not set (set TOKEN in .env)');
    expect(interpolateDocument(fixture('required.yml'), {}, 'required.yml', { onMissing: 'empty' })).toEqual({
      services: { app: { image: 'example/app', environment: { TOKEN: '' } } },
    });
  });

  it('names list items by index', () => {
    expect(() => interpolateDocument({ services: { app: { command: ['run', '${X:?x}'] } } }, {}, 'f.yml')).toThrow('f.yml services.app.command[1]: variable X is not set (x)');
  });
});

describe('variable references', () => {
  it('lists each reference with whether it needs a value, its default or message, and where it is', () => {
    expect(variableReferences(fixture('docker-compose.yml'), 'docker-compose.yml')).toEqual([
      { name: 'REGISTRY', required: false, default: 'ghcr.io', path: 'services.app.image' },
      { name: 'OWNER', required: true, path: 'services.app.image' },
      { name: 'TAG', required: false, default: 'latest', path: 'services.app.image' },
      { name: 'EMPTY', required: false, default: 'soft', path: 'services.app.environment.EMPTY_SOFT' },
      { name: 'EMPTY', required: false, default: 'hard', path: 'services.app.environment.EMPTY_HARD' },
      { name: 'UNSET', required: false, default: 'hard', path: 'services.app.environment.UNSET_HARD' },
      { name: 'OWNER', required: true, message: 'set OWNER', path: 'services.app.environment.SET_REQUIRED' },
      { name: 'EMPTY', required: true, message: 'set EMPTY', path: 'services.app.environment.EMPTY_ALLOWED' },
    ]);
  });

  it('counts what a default or an alternative holds as optional', () => {
    expect(variableReferences({ a: '${A:-${B}}', b: '${C:+${D:?d}}', c: '${E:?${F}}' }, 'f')).toEqual([
      { name: 'A', required: false, default: '${B}', path: 'a' },
      { name: 'B', required: false, path: 'a' },
      { name: 'C', required: false, path: 'b' },
      { name: 'D', required: false, message: 'd', path: 'b' },
      { name: 'E', required: true, message: '${F}', path: 'c' },
    ]);
  });

  it('gives the first default of each variable', () => {
    const references = variableReferences({ a: '${A:-x:1}', b: '${B-y}', c: '${A:-other}', d: '${C:?set C}', e: '${D}' }, 'f');
    expect(interpolationDefaults(references)).toEqual({ A: 'x:1', B: 'y' });
  });
});

// Compose's variable interpolation, as the Compose spec and Compose v2 do it: `$VAR`, `${VAR}`,
// `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+alternative}`,
// `${VAR+alternative}`, interpolation nested inside those arguments (`${A:-${B:-x}}`), and `$$` for a
// literal `$`. docker-compose 1.29 has neither the nesting nor `:+`/`+`; its files are a subset of this.
// Only string values are interpolated, never keys (compose does the same).
import { UsageError } from '../core/cli.ts';

export type Variables = Record<string, string | undefined>;

export interface InterpolateOptions {
  /**
   * A required variable without a value: 'error' stops as compose would (building, where this machine
   * has the values); 'empty' reads on with an empty string (reading a file deployed elsewhere, where the
   * server's .env has them). Default 'error'.
   */
  onMissing?: 'error' | 'empty';
}

/** One `${...}` or `$VAR` written in a compose document. */
export interface VariableReference {
  name: string;
  /** `$VAR`, `${VAR}`, `${VAR:?msg}` and `${VAR?msg}` need a value; defaults and alternatives do not, nor anything inside them. */
  required: boolean;
  /** The `:-`/`-` default as written (it may itself hold `${...}`). */
  default?: string;
  /** The `:?`/`?` message as written. */
  message?: string;
  /** Where it is written, e.g. `services.api.build.args.BASE_IMAGE`. */
  path: string;
}

type Operator = ':-' | '-' | ':?' | '?' | ':+' | '+';

type Part = string | { name: string; operator?: Operator; argument: Part[]; written: string };

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;
const OPERATOR = /:?[-?+]/y;

class TemplateError extends Error {}

function matchAt(pattern: RegExp, text: string, at: number): string | undefined {
  pattern.lastIndex = at;
  return pattern.exec(text)?.[0];
}

/**
 * Parses `text` from `start`; inside an argument (`nested`) it stops at the `}` that closes it. Like
 * compose-go, a literal `{` inside an argument needs its own `}` before the argument ends.
 */
function parse(text: string, start: number, nested: boolean): { parts: Part[]; end: number } {
  const parts: Part[] = [];
  let literal = '';
  let braces = 0;
  let at = start;
  while (at < text.length) {
    const char = text[at]!;
    if (nested && char === '}' && braces === 0) break;
    if (char !== '$') {
      if (nested && char === '{') braces++;
      if (nested && char === '}') braces--;
      literal += char;
      at++;
      continue;
    }
    if (text[at + 1] === '$') {
      literal += '$';
      at += 2;
      continue;
    }
    const braced = text[at + 1] === '{';
    const name = matchAt(NAME, text, at + (braced ? 2 : 1));
    if (!name) throw new TemplateError();
    if (literal) parts.push(literal);
    literal = '';
    at += (braced ? 2 : 1) + name.length;
    if (!braced) {
      parts.push({ name, argument: [], written: '' });
      continue;
    }
    const operator = matchAt(OPERATOR, text, at) as Operator | undefined;
    if (!operator && text[at] !== '}') throw new TemplateError();
    const inner = operator ? parse(text, at + operator.length, true) : { parts: [], end: at };
    if (text[inner.end] !== '}') throw new TemplateError();
    parts.push({ name, ...(operator ? { operator } : {}), argument: inner.parts, written: operator ? text.slice(at + operator.length, inner.end) : '' });
    at = inner.end + 1;
  }
  if (literal) parts.push(literal);
  return { parts, end: at };
}

function parseTemplate(text: string, where: string): Part[] {
  try {
    return parse(text, 0, false).parts;
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text);
    throw new UsageError(`${where}: invalid interpolation ${shown}; write $$ for a literal $`);
  }
}

function evaluate(parts: Part[], vars: Variables, where: string, onMissing: 'error' | 'empty'): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'string') {
      out += part;
      continue;
    }
    const value = vars[part.name];
    const set = value !== undefined;
    const filled = set && value !== '';
    // Arguments are evaluated only when used, so an unused default never fails.
    const argument = () => evaluate(part.argument, vars, where, onMissing);
    switch (part.operator) {
      case undefined:
        out += value ?? '';
        break;
      case ':-':
        out += filled ? value : argument();
        break;
      case '-':
        out += set ? value : argument();
        break;
      case ':+':
        out += filled ? argument() : '';
        break;
      case '+':
        out += set ? argument() : '';
        break;
      case ':?':
      case '?':
        if (part.operator === ':?' ? filled : set) out += value;
        else if (onMissing === 'error') {
          const message = argument();
          throw new UsageError(`${where}: variable ${part.name} is ${set ? 'empty' : 'not set'} (${message || 'required'})`);
        }
        break;
    }
  }
  return out;
}

/** Interpolates one string; `where` (file and key path) starts any error message. */
export function interpolate(text: string, vars: Variables, where: string, options: InterpolateOptions = {}): string {
  return evaluate(parseTemplate(text, where), vars, where, options.onMissing ?? 'error');
}

/** Key path of a child, as error messages and references show it: `services.api`, `ports[0]`. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent ? `${parent}.${key}` : key;
}

/** Interpolates every string value of a parsed compose document (keys stay as written); `file` names it in errors. */
export function interpolateDocument<T>(document: T, vars: Variables, file: string, options: InterpolateOptions = {}): T {
  const walk = (value: unknown, at: string): unknown => {
    if (typeof value === 'string') return interpolate(value, vars, `${file} ${at}`, options);
    if (Array.isArray(value)) return value.map((item, index) => walk(item, childPath(at, index)));
    if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(item, childPath(at, key))]));
    return value;
  };
  return walk(document, '') as T;
}

/** Every variable reference in a parsed compose document, in document order; `file` names it in errors. */
export function variableReferences(document: unknown, file: string): VariableReference[] {
  const references: VariableReference[] = [];
  const collect = (parts: Part[], at: string, optional: boolean) => {
    for (const part of parts) {
      if (typeof part === 'string') continue;
      const operator = part.operator;
      references.push({
        name: part.name,
        required: !optional && (operator === undefined || operator === ':?' || operator === '?'),
        ...(operator === ':-' || operator === '-' ? { default: part.written } : {}),
        ...(operator === ':?' || operator === '?' ? { message: part.written } : {}),
        path: at,
      });
      // What a default or an alternative holds is needed only in some cases; a message is never a value.
      if (operator === ':-' || operator === '-' || operator === ':+' || operator === '+') collect(part.argument, at, true);
    }
  };
  const walk = (value: unknown, at: string) => {
    if (typeof value === 'string') collect(parseTemplate(value, `${file} ${at}`), at, false);
    else if (Array.isArray(value)) value.forEach((item, index) => walk(item, childPath(at, index)));
    else if (isPlainObject(value)) for (const [key, item] of Object.entries(value)) walk(item, childPath(at, key));
  };
  walk(document, '');
  return references;
}

/** The first default written for each variable: what compose uses when the variable is unset. */
export function interpolationDefaults(references: VariableReference[]): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const reference of references) {
    if (reference.default !== undefined) defaults[reference.name] ??= reference.default;
  }
  return defaults;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

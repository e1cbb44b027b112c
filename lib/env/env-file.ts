// Reading and writing .env files. Values come from dotenv's own parser; a line scanner beside it finds
// where each variable sits (to update it in place) and which lines are malformed (to report line numbers).
// Writes quote each value so that dotenv reads back exactly the string that was written.
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, copyFileSync, constants, existsSync, fchmodSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';

export interface EnvEntry {
  name: string;
  /** 0-based index of the first and last line of the entry (a quoted value may span lines). */
  firstLine: number;
  lastLine: number;
}

export interface MalformedLine {
  /** 1-based, as editors show it. */
  line: number;
  /** Never contains the line's text: it may hold a secret. */
  reason: string;
}

export interface ParsedEnv {
  values: Record<string, string>;
  entries: EnvEntry[];
  malformed: MalformedLine[];
}

export interface EnvFile extends ParsedEnv {
  file: string;
  text: string;
  /** Permission bits, e.g. 0o600. */
  mode: number;
}

/** Files that hold secrets are readable and writable by their owner only. */
export const SECRET_FILE_MODE = 0o600;

const ASSIGNMENT = /^\s*(?:export\s+)?([^=\s]+)\s*=\s*/;
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const QUOTES = ['"', "'", '`'];

export function parseEnvText(text: string): ParsedEnv {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const entries: EnvEntry[] = [];
  const malformed: MalformedLine[] = [];
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!;
    if (/^\s*(#|$)/.test(line)) continue;
    const assignment = ASSIGNMENT.exec(line);
    if (!assignment) {
      malformed.push({ line: index + 1, reason: 'not NAME=VALUE' });
      continue;
    }
    const name = assignment[1]!;
    if (!VALID_NAME.test(name)) {
      malformed.push({ line: index + 1, reason: 'the name is not a valid variable name (letters, digits, _)' });
      continue;
    }
    const rest = line.slice(assignment[0].length);
    const quote = rest[0] ?? '';
    if (!QUOTES.includes(quote)) {
      entries.push({ name, firstLine: index, lastLine: index });
      continue;
    }
    const remaining = [rest.slice(1), ...lines.slice(index + 1)].join('\n');
    const end = closingQuote(remaining, quote);
    if (end === undefined) {
      malformed.push({ line: index + 1, reason: `${name}: the ${quoteName(quote)} opened here is not closed, or text follows the closing quote` });
      continue;
    }
    const lastLine = index + (remaining.slice(0, end).match(/\n/g)?.length ?? 0);
    entries.push({ name, firstLine: index, lastLine });
    index = lastLine;
  }
  return { values: parseDotenv(text), entries, malformed };
}

/**
 * Where dotenv's pattern closes a quoted value: inside, a quote only appears escaped (\"), and after
 * the closing quote only blanks or a comment may follow on that line. dotenv's regex is greedy, so the
 * farthest such quote wins. Returns the index of the closing quote in `text` (which starts after the
 * opening quote), or undefined when dotenv would not read the value as quoted.
 */
function closingQuote(text: string, quote: string): number | undefined {
  const candidates: number[] = [];
  for (let at = text.indexOf(quote); at !== -1; at = text.indexOf(quote, at + 1)) {
    candidates.push(at);
    if (text[at - 1] !== '\\') break;
  }
  for (const at of candidates.reverse()) {
    const lineEnd = text.indexOf('\n', at);
    if (/^\s*(#.*)?$/.test(text.slice(at + 1, lineEnd === -1 ? undefined : lineEnd))) return at;
  }
  return undefined;
}

function quoteName(quote: string): string {
  return quote === '"' ? 'double quote' : quote === "'" ? 'single quote' : 'backtick';
}

// Preference order: bare for plain values; single quotes keep `$`, `#` and spaces literal for both
// dotenv and Compose; double quotes carry newlines as \n; the rest only dotenv reads exactly.
const ENCODINGS: ((value: string) => string | undefined)[] = [
  (value) => (/^[\w.,:/@+%=~-]*$/.test(value) ? value : undefined),
  (value) => (/[\n\r]/.test(value) ? undefined : `'${value}'`),
  (value) => `"${value.replace(/\n/g, '\\n').replace(/\r/g, '\\r')}"`,
  (value) => `'${value}'`,
  (value) => `\`${value}\``,
];

/** `NAME=value`, quoted so that dotenv.parse returns exactly `value` from a well-formed line. */
export function formatEntry(name: string, value: string): string {
  for (const encode of ENCODINGS) {
    const encoded = encode(value);
    if (encoded === undefined) continue;
    // dotenv also reads some broken quoting "right" by accident; require a well-formed line as well.
    const parsed = parseEnvText(`${name}=${encoded}\n`);
    if (parsed.malformed.length === 0 && parsed.values[name] === value) return `${name}=${encoded}`;
  }
  // Only values mixing quote characters with a carriage return or a backslash sequence get here.
  throw new Error(`${name} cannot be written to a .env file exactly (it mixes quote characters with line breaks or backslashes); choose another value`);
}

export function readEnvFile(file: string): EnvFile | undefined {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8');
  return { file, text, mode: statSync(file).mode & 0o777, ...parseEnvText(text) };
}

/**
 * The text of an existing file with some variables set: each entry of a changed variable is rewritten
 * in place (comments and order survive), and variables the file lacks are appended as `blocks`.
 */
export function updateEnvText(parsed: ParsedEnv, text: string, changes: Record<string, string>, blockFor: (name: string) => string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const present = new Set(parsed.entries.map((entry) => entry.name));
  // Back to front so the line indexes of earlier entries stay valid.
  for (const entry of [...parsed.entries].reverse()) {
    const value = changes[entry.name];
    if (value !== undefined) lines.splice(entry.firstLine, entry.lastLine - entry.firstLine + 1, formatEntry(entry.name, value));
  }
  const appended = Object.keys(changes).filter((name) => !present.has(name)).map(blockFor);
  if (appended.length === 0) return lines.join('\n');
  while (lines.length > 0 && lines.at(-1) === '') lines.pop();
  return [...lines, '', ...appended].join('\n') + '\n';
}

/**
 * Writes through a temporary file and a rename, so readers see the old file or the new one, never half.
 * The temporary file has an unpredictable name and is created exclusively (O_EXCL, which never follows a
 * symlink) with mode 0600: a link planted next to the file cannot redirect the secrets, and they are
 * never readable by others, even briefly. The rename replaces a link at `file` itself, never its target.
 */
export function writeEnvFile(file: string, text: string): void {
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(temporary, 'wx', SECRET_FILE_MODE);
  try {
    writeFileSync(fd, text);
    fchmodSync(fd, SECRET_FILE_MODE);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(temporary, file);
}

/** `FILE.bak-YYYYmmddTHHMMSS` (UTC), mode 0600; a counter is added when one exists from the same second. */
export function backupEnvFile(file: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, '');
  for (let attempt = 1; ; attempt++) {
    const backup = `${file}.bak-${stamp}${attempt > 1 ? `-${attempt}` : ''}`;
    try {
      copyFileSync(file, backup, constants.COPYFILE_EXCL);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    chmodSync(backup, SECRET_FILE_MODE);
    return backup;
  }
}

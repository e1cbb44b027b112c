import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { afterEach, describe, expect, it } from 'vitest';
import { backupEnvFile, formatEntry, parseEnvText, readEnvFile, updateEnvText, writeEnvFile } from '../../lib/env/env-file.ts';

const awkward: Record<string, string> = {
  plain: 'aidd',
  empty: '',
  spaces: 'two words and  a double space',
  edges: '  leading and trailing  ',
  hash: 'before#after # and a comment-like tail',
  equals: 'a=b==c',
  single: "it's",
  double: 'say "hi"',
  bothQuotes: `it's "quoted"`,
  backtick: 'a `command`',
  dollar: '$HOME and ${PATH}',
  backslashes: 'C:\\path\\n\\t and a trailing \\',
  newline: 'line one\nline two\n',
  newlineAndQuote: "line 'one'\nline two",
  newlineAllQuotes: `'single' "double"\nsecond line`,
  literalBackslashN: 'not a newline: \\n',
  literalBackslashNWithNewline: 'a \\n sequence\nand a real newline',
  carriageReturn: 'windows\r\nline',
  unicode: 'пароль ✓',
  jsonish: '{"a": [1, "#"]}',
};

describe('formatEntry', () => {
  it.each(Object.entries(awkward))('writes %s so that dotenv reads back exactly the same value', (_, value) => {
    const line = formatEntry('VALUE', value);
    expect(parseDotenv(`${line}\n`).VALUE).toBe(value);
  });

  it('leaves plain values bare and single-quotes values with $, so Compose does not interpolate them', () => {
    expect(formatEntry('A', 'ghcr.io/acme:1.0@sha256:ab')).toBe('A=ghcr.io/acme:1.0@sha256:ab');
    expect(formatEntry('A', '$HOME')).toBe("A='$HOME'");
    expect(formatEntry('A', 'a\nb')).toBe('A="a\\nb"');
  });

  it('round-trips every awkward value through a whole file, neighbours included', () => {
    const names = Object.keys(awkward).map((key) => key.toUpperCase());
    const text = Object.values(awkward).map((value, index) => `# ${names[index]}\n${formatEntry(names[index]!, value)}\nAFTER_${index}=x`).join('\n') + '\n';
    const parsed = parseEnvText(text);
    expect(parsed.malformed).toEqual([]);
    Object.values(awkward).forEach((value, index) => {
      expect(parsed.values[names[index]!]).toBe(value);
      expect(parsed.values[`AFTER_${index}`]).toBe('x');
    });
    expect(parsed.entries.map((entry) => entry.name)).toEqual(names.flatMap((name, index) => [name, `AFTER_${index}`]));
  });

  it('round-trips random strings of awkward characters, refusing only those no quoting can carry', () => {
    const alphabet = [...'ab =#\'"`\\$\n\r\t n'];
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let sample = 0; sample < 3000; sample++) {
      const value = Array.from({ length: 1 + Math.floor(random() * 12) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      let line: string;
      try {
        line = formatEntry('V', value);
      } catch {
        // Single quotes and backticks carry anything but their own quote and a carriage return.
        expect({ value, unquotable: value.includes('\r') || (value.includes(`'`) && value.includes('`')) }).toEqual({ value, unquotable: true });
        continue;
      }
      const parsed = parseEnvText(`${line}\nNEXT=1\n`);
      expect({ value, malformed: parsed.malformed, read: parsed.values.V, next: parsed.values.NEXT }).toEqual({ value, malformed: [], read: value, next: '1' });
    }
  });

  it('refuses, without quoting it, a value no .env quoting can carry', () => {
    const value = `'"\`\\n secret-part`;
    expect(() => formatEntry('A', value)).toThrow(/A cannot be written/);
    expect(() => formatEntry('A', value)).not.toThrow(/secret-part/);
  });
});

describe('parseEnvText', () => {
  it('reports malformed lines by number, without their text', () => {
    const text = ['# comment', 'GOOD=1', 'no equals sign here', '', '1BAD=x', "OPEN='never closed", 'AFTER=2', 'TAIL="x" junk'].join('\n');
    const parsed = parseEnvText(text);
    expect(parsed.malformed).toEqual([
      { line: 3, reason: 'not NAME=VALUE' },
      { line: 5, reason: 'the name is not a valid variable name (letters, digits, _)' },
      { line: 6, reason: 'OPEN: the single quote opened here is not closed, or text follows the closing quote' },
      { line: 8, reason: 'TAIL: the double quote opened here is not closed, or text follows the closing quote' },
    ]);
    expect(JSON.stringify(parsed.malformed)).not.toMatch(/never closed|junk/);
    expect(parsed.values.GOOD).toBe('1');
    expect(parsed.values.AFTER).toBe('2');
  });

  it('spans a multi-line quoted value over its lines, like dotenv', () => {
    const text = "A=1\nKEY='first\nSECOND=not a variable\nlast'\nB=2\n";
    const parsed = parseEnvText(text);
    expect(parsed.malformed).toEqual([]);
    expect(parsed.entries).toEqual([
      { name: 'A', firstLine: 0, lastLine: 0 },
      { name: 'KEY', firstLine: 1, lastLine: 3 },
      { name: 'B', firstLine: 4, lastLine: 4 },
    ]);
    expect(parsed.values.KEY).toBe('first\nSECOND=not a variable\nlast');
  });

  it('accepts export prefixes, blanks around =, comments after values and CRLF line ends', () => {
    const parsed = parseEnvText("export A=1\r\nB = two # note\r\nC='x' # note\r\n");
    expect(parsed.malformed).toEqual([]);
    expect(parsed.values).toEqual({ A: '1', B: 'two', C: 'x' });
  });
});

describe('updateEnvText', () => {
  it('rewrites changed entries in place, keeps comments and order, and appends new variables', () => {
    const text = "# top\nA=1\n# about B\nB='multi\nline'\nC=3\n";
    const updated = updateEnvText(parseEnvText(text), text, { B: 'new value', D: 'd' }, (name) => `# about ${name}\n${name}=d`);
    expect(updated).toBe("# top\nA=1\n# about B\nB='new value'\nC=3\n\n# about D\nD=d\n");
  });
});

describe('files', () => {
  const umask = process.umask();
  afterEach(() => {
    process.umask(umask);
  });

  it('writes with mode 0600 even under a permissive umask, replacing a wider file', () => {
    process.umask(0);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'env-file-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'OLD=1\n', { mode: 0o644 });
    writeEnvFile(file, 'NEW=1\n');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe('NEW=1\n');
    expect(readEnvFile(file)).toMatchObject({ mode: 0o600, values: { NEW: '1' } });
  });

  it('keeps a timestamped 0600 backup, and a numbered one within the same second', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'env-file-'));
    const file = path.join(dir, '.env');
    writeFileSync(file, 'A=1\n', { mode: 0o644 });
    const now = new Date('2025-03-04T05:06:07.890Z');
    const first = backupEnvFile(file, now);
    const second = backupEnvFile(file, now);
    expect(path.basename(first)).toBe('.env.bak-20250304T050607');
    expect(path.basename(second)).toBe('.env.bak-20250304T050607-2');
    expect(readFileSync(first, 'utf8')).toBe('A=1\n');
    expect(statSync(first).mode & 0o777).toBe(0o600);
  });

  it('reads a missing file as undefined', () => {
    expect(readEnvFile(path.join(os.tmpdir(), 'does-not-exist', '.env'))).toBeUndefined();
  });
});

// Every secret value the toolkit handles is registered here, so that anything it prints
// (command lines, command output, errors, JSON) passes through redact() first.
const registered = new Set<string>();

export const REDACTED = '[REDACTED]';

/** A value that must never be printed; commands receive it on stdin, never as an argument. */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
    registerSecret(value);
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
}

export function registerSecret(value: string | undefined): void {
  // Very short values would redact ordinary words; the schema refuses such secrets anyway.
  if (value && value.length >= 4) registered.add(value);
}

export function redact(text: string): string {
  let out = text;
  for (const value of registered) {
    if (out.includes(value)) out = out.split(value).join(REDACTED);
  }
  return out;
}

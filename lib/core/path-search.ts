// Finding programs on PATH the way a shell would, each distinct one once.
import { accessSync, constants, realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * Every distinct executable named `program` on PATH, in PATH order: a machine may have two docker clients,
 * an old and a new one, and a link to one of them.
 */
export function executablesOnPath(program: string, pathVariable = process.env.PATH ?? ''): string[] {
  const seen = new Set<string>();
  const found: string[] = [];
  for (const dir of pathVariable.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      const real = realpathSync(candidate);
      if (seen.has(real)) continue;
      seen.add(real);
      found.push(candidate);
    } catch {
      // not there or not executable
    }
  }
  return found;
}

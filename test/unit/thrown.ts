// The error a call throws, for tests that check its message and exit code.
import type { UsageError } from '../../lib/core/cli.ts';

export function thrown(run: () => unknown): UsageError {
  try {
    run();
  } catch (error) {
    return error as UsageError;
  }
  throw new Error('expected an error');
}

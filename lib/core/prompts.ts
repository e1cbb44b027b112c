// What every walkthrough shares: a cancelled prompt ends the run with nothing changed.
import * as prompts from '@clack/prompts';
import { EXIT, ToolError } from './cli.ts';

export function cancelled(what = 'nothing was changed'): never {
  prompts.cancel(`Cancelled: ${what}.`);
  throw new ToolError(`cancelled: ${what}`, EXIT.cancelled);
}

/** A prompt's answer, or the end of the run when the person cancelled (Ctrl-C, Escape). */
export function answered<T>(answer: T, what?: string): Exclude<T, symbol> {
  if (prompts.isCancel(answer)) cancelled(what);
  return answer as Exclude<T, symbol>;
}

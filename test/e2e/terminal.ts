// A program on a real terminal, for the e2e tests of the walkthroughs: tmux gives it a pseudo-terminal on
// a private server (its own socket), the test types with send-keys and reads the screen with
// capture-pane. The same approach as test/cli/terminal.bash, from TypeScript.
import path from 'node:path';
import { shellQuote, type Runner } from '../../lib/core/exec.ts';
import { tempDir } from './harness.ts';

export interface Terminal {
  /** The whole screen, scroll-back included, lines joined where the terminal wrapped them. */
  screen(): Promise<string>;
  /** Waits until the screen shows `text`, at most `seconds`; fails with the screen otherwise. */
  waitFor(text: string | RegExp, seconds?: number): Promise<string>;
  /** Types text as it is. */
  type(text: string): Promise<void>;
  /** Presses keys by tmux name: Enter, C-c, BSpace. */
  keys(...names: string[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts argv in a 160x80 terminal, outside CI, with `env` added and `unset` removed from this process's
 * environment; after the program exits the pane prints `[exit CODE]` and stays open for reading.
 */
export async function startOnTerminal(runner: Runner, argv: string[], options: { env?: Record<string, string>; unset?: string[]; cwd?: string } = {}): Promise<Terminal> {
  const socket = path.join(tempDir('aidd-terminal'), 'tmux.sock');
  const tmux = (args: string[]) => runner.run({ argv: ['tmux', '-S', socket, ...args], timeoutMs: 10_000 });
  const unset = ['CI', ...(options.unset ?? [])].flatMap((name) => ['-u', name]);
  const assignments = Object.entries({ TERM: 'xterm-256color', ...options.env }).map(([name, value]) => `${name}=${value}`);
  const command = `${['env', ...unset, ...assignments, ...argv].map(shellQuote).join(' ')}; echo "[exit $?]"; sleep 900`;
  await tmux(['new-session', '-d', '-x', '160', '-y', '80', ...(options.cwd ? ['-c', options.cwd] : []), command]);
  const screen = async () => (await tmux(['capture-pane', '-p', '-J', '-S', '-', '-t', '0'])).stdout;
  return {
    screen,
    async waitFor(text, seconds = 60) {
      const deadline = Date.now() + seconds * 1000;
      let shown = '';
      while (Date.now() < deadline) {
        shown = await screen();
        if (typeof text === 'string' ? shown.includes(text) : text.test(shown)) return shown;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      throw new Error(`the terminal never showed ${String(text)} within ${seconds} s; it shows:\n${shown}`);
    },
    async type(text) {
      await tmux(['send-keys', '-t', '0', '-l', '--', text]);
    },
    async keys(...names) {
      await tmux(['send-keys', '-t', '0', ...names]);
    },
    async close() {
      await runner.attempt({ argv: ['tmux', '-S', socket, 'kill-server'], timeoutMs: 10_000 });
    },
  };
}

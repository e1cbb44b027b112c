// One strict SSH connection per server for `aidd cluster`, and the scripts' failures as one-line errors.
import { EXIT, ToolError } from '../core/cli.ts';
import { lastLine, type Result } from '../core/exec.ts';
import { redact } from '../core/secrets.ts';
import type { ShellText } from '../deploy/remote-scripts.ts';
import { explainSshFailure, remoteScriptCommand, type SshConnection, type SshTarget } from '../deploy/ssh.ts';
import { CLUSTER_EXIT } from './scripts.ts';

/** A server `aidd cluster` works on, over its own shared connection (engine.ts openSession). */
export type ClusterServer = SshConnection;

/** The error for a failed script: ssh trouble, a refusal (exit 3), a missing piece (exit 2), or a failure. */
export function scriptError(ssh: SshTarget, result: Result): ToolError {
  const sshProblem = explainSshFailure(ssh, result);
  if (sshProblem) return sshProblem;
  const detail = redact(lastLine(result.stderr) || `exit code ${result.exitCode}`);
  if (result.exitCode === CLUSTER_EXIT.refused) return new ToolError(`${ssh.host}: ${detail}`, EXIT.refused);
  if (result.exitCode === CLUSTER_EXIT.missing) return new ToolError(`${ssh.host}: ${detail}`, EXIT.usage);
  if (result.exitCode === 124 || result.exitCode === 143) return new ToolError(`on ${ssh.host}: timed out: ${detail}`);
  return new ToolError(`on ${ssh.host}: ${detail}`);
}

/** Runs a script on the server over its connection; its stdout when it exits 0. In dry-run, prints it. */
export async function runScriptOn(server: ClusterServer, script: ShellText, timeoutMs = 120_000): Promise<string> {
  const result = await server.runner.attempt(remoteScriptCommand(server.ssh, script.text, timeoutMs));
  if (result.exitCode !== 0) throw scriptError(server.ssh, result);
  return result.stdout;
}

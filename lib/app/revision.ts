// The app's revision: the commit of the git repository that holds its compose file (never the
// toolkit's own), which build-push tags images with and ssh-deploy records with each release.
import { UsageError } from '../core/cli.ts';
import type { Command, Runner } from '../core/exec.ts';

export interface Revision {
  sha: string;
  /** Uncommitted changes: the image is not what the commit says, so it is tagged `<sha>-dirty`. */
  dirty: boolean;
  /** Committer date (ISO 8601): a clean build's `created` label, so rebuilding a commit gives the same image. */
  committedAt: string;
}

export function gitCommitCommand(dir: string): Command {
  return { argv: ['git', '-C', dir, 'log', '-1', '--format=%H %cI'], readOnly: true, timeoutMs: 15_000 };
}

export function gitStatusCommand(dir: string): Command {
  return { argv: ['git', '-C', dir, 'status', '--porcelain'], readOnly: true, timeoutMs: 30_000 };
}

export function gitRemoteCommand(dir: string): Command {
  return { argv: ['git', '-C', dir, 'remote', 'get-url', 'origin'], readOnly: true, timeoutMs: 15_000 };
}

export async function readRevision(runner: Runner, dir: string): Promise<Revision> {
  const commit = await runner.attempt(gitCommitCommand(dir));
  const [sha, committedAt] = commit.stdout.trim().split(' ');
  if (commit.exitCode !== 0 || !sha || !committedAt || !/^[0-9a-f]{40}$/.test(sha)) {
    throw new UsageError(`${dir} is not in a git repository with a commit; images are tagged with the commit sha, so commit first (git add -A && git commit)`);
  }
  const status = await runner.run(gitStatusCommand(dir));
  return { sha, committedAt, dirty: status.stdout.trim() !== '' };
}

/** The commit sha a release records, or undefined when the app is not in a git repository. */
export async function appCommit(runner: Runner, dir: string): Promise<string | undefined> {
  const sha = (await runner.attempt(gitCommitCommand(dir))).stdout.trim().split(' ')[0];
  return sha && /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
}

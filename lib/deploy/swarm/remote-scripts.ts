// The scripts a deploy to a swarm runs on its manager, built like lib/deploy/remote-scripts.ts (one
// function over the shared prelude, every value quoted by the `sh` tag).
//
// Work in progress on the swarm-target branch: nothing calls them yet.
import { heredoc, remoteScript, sh, type RemoteLayout } from '../remote-scripts.ts';

/**
 * A release's variables as `NAME BASE64` lines: no value appears as written, so no quote, `$`, backslash
 * or newline in it can change the script, and the script reads each back exactly.
 */
export function encodedVariables(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`encodedVariables: ${JSON.stringify(name)} is not a variable name`);
      return `${name} ${Buffer.from(value, 'utf8').toString('base64')}\n`;
    })
    .join('');
}

/**
 * `docker stack deploy` of a release's stack file, its variables in the environment of that one
 * command: docker interpolates the `${VAR}` references the stack file keeps, so no value is written
 * into the file, and none reaches a command line (export and printf are bash builtins).
 */
export function stackDeployScript(layout: RemoteLayout, release: string, vars: Record<string, string>): string {
  const doc = heredoc(encodedVariables(vars));
  return remoteScript(
    layout,
    `stack-deploy ${release}`,
    sh`cd "$deploy/releases/"${release}
while read -r name encoded; do
  # The x keeps a value's trailing newlines, which $(...) would strip.
  value=$(printf '%s' "$encoded" | base64 -d; printf x)
  export "$name=\${value%x}"
done ${doc.start}
${doc.body}
docker stack deploy --with-registry-auth --prune --compose-file stack.yml "$project"
`,
  );
}

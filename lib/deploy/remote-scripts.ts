// Bash scripts the deploy runs on the server, built by pure functions so tests and --dry-run see
// exactly what would run. Every script starts from the same prelude: strict mode, umask 077 (files
// holding secrets are born 0600), the deploy path, and a `compose` function bound to one release.
//
// Scripts are written with the `sh` template tag, which shell-quotes every interpolated value, so a
// value (an image ref, a release id, a service name) can never become a command on the server. Trusted
// script text goes in through `raw()`, the only way around the quoting.
import { randomBytes } from 'node:crypto';
import { shellQuote } from '../core/exec.ts';
import { PROXY_ADMIN_SOCKET, PROXY_CONFIG_DIR, PROXY_CONTAINER, PROXY_VOLUMES } from './proxy.ts';

export interface RemoteLayout {
  /** Deploy path on the server; `~/x` means under the deploy user's home. */
  deployPath: string;
  /** Compose project name shared by every release, so volumes carry over (on a swarm: the stack's name). */
  project: string;
  /** How the app runs on the server: compose (default), or a swarm stack deployed from its manager. */
  target?: 'compose' | 'swarm';
}

/** Exit codes of remote scripts for conditions the deploy explains in one line. */
export const REMOTE_EXIT = {
  noDocker: 40,
  noCompose: 41,
  notWritable: 42,
  loginRefused: 43,
  pullFailed: 44,
  noEnv: 45,
  migrateFailed: 46,
  noRelease: 47,
  backupFailed: 48,
  releaseExists: 49,
  /** A step started apart from the connection has not finished yet. */
  stepRunning: 50,
  /** --break-lock refused: a step still runs on the server. */
  stepStillRunning: 51,
  noBackup: 52,
  restoreFailed: 53,
  /** The target is a swarm, and the engine on the server is not a manager of one. */
  notSwarmManager: 54,
} as const;

/** Script text that is spliced as is: only text the toolkit wrote, or a `sh` result. */
export class ShellText {
  readonly text: string;

  constructor(text: string) {
    this.text = text;
  }
}

/** The opt-out of quoting: `text` is trusted script text, never a value from outside. */
export function raw(text: string): ShellText {
  return new ShellText(text);
}

type ShellValue = string | number | ShellText | readonly string[];

/**
 * Follows bash quoting through the literal parts of a template, so `sh` knows whether an
 * interpolation lands outside quotes. Inside "..." or '...' (or a comment) a quoted value would be
 * re-read by bash (`"x'$(cmd)'"` runs cmd), so there an interpolation is refused. Heredocs are not
 * followed: their text enters through `raw()` as one piece.
 */
class QuoteTracker {
  /** Open contexts: ' " # ( and $( ; empty means top level, unquoted. */
  readonly #open: string[] = [];
  #previous = '\n';

  feed(text: string): void {
    for (let at = 0; at < text.length; at++) {
      const char = text[at]!;
      const context = this.#open.at(-1);
      if (context === "'") {
        if (char === "'") this.#open.pop();
      } else if (context === '#') {
        if (char === '\n') this.#open.pop();
      } else if (char === '\\') {
        at += 1;
      } else if (char === '$' && text[at + 1] === '(') {
        this.#open.push('$(');
        at += 1;
      } else if (context === '"') {
        if (char === '"') this.#open.pop();
      } else if (char === "'" || char === '"') {
        this.#open.push(char);
      } else if (char === '#' && /[\s;&|(]/.test(this.#previous)) {
        this.#open.push('#');
      } else if (char === '(' && context !== undefined) {
        this.#open.push('(');
      } else if (char === ')' && context !== undefined) {
        this.#open.pop();
      }
      this.#previous = text[at] ?? char;
    }
  }

  /** A value sits in the text like a word character. */
  value(): void {
    this.#previous = 'x';
  }

  /** Inside quotes or a comment; a $( ... ) inside double quotes is unquoted again. */
  get quoted(): boolean {
    const context = this.#open.at(-1);
    return context === "'" || context === '"' || context === '#';
  }

  get balanced(): boolean {
    return this.#open.length === 0;
  }
}

function quoteValue(value: ShellValue): string {
  if (value instanceof ShellText) return value.text;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`sh: ${value} is not a number a script can use`);
    return String(value);
  }
  if (typeof value === 'string') return shellQuote(value);
  return value.map((item) => shellQuote(item)).join(' ');
}

/**
 * Builds script text; each `${value}` becomes one shell word (an array, one word per item), whatever
 * it contains. An interpolation inside quotes or a comment is a bug in the template and throws.
 */
export function sh(literals: TemplateStringsArray, ...values: ShellValue[]): ShellText {
  const tracker = new QuoteTracker();
  let text = '';
  literals.forEach((literal, index) => {
    tracker.feed(literal);
    text += literal;
    if (index >= values.length) return;
    if (tracker.quoted) throw new Error(`sh: value ${index + 1} is interpolated inside quotes or a comment, after: ${text.slice(-60)}`);
    text += quoteValue(values[index]!);
    tracker.value();
  });
  if (!tracker.balanced) throw new Error(`sh: unbalanced quotes or parentheses in: ${text.slice(0, 80)}`);
  return new ShellText(text);
}

function deployPathExpr(deployPath: string): ShellText {
  return deployPath.startsWith('~/') ? sh`"$HOME"/${deployPath.slice(2)}` : sh`${deployPath}`;
}

/** `service_container SERVICE`: a running container of the service on this engine, found by labels. */
const serviceContainer = {
  compose: sh`# The running container of a service, found by compose's labels: docker answers at once, compose v1 takes a second.
service_container() { docker ps --quiet --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" --filter label=com.docker.compose.oneoff=False | head -n 1; }
`,
  // On a swarm, a task of the stack's service that runs on the manager: where a service with data is pinned.
  swarm: sh`service_container() { docker ps --quiet --filter "label=com.docker.stack.namespace=$project" --filter "label=com.docker.swarm.service.name=\${project}_$1" | head -n 1; }
`,
};

export function prelude(layout: RemoteLayout): ShellText {
  return sh`set -euo pipefail
umask 077
deploy=${deployPathExpr(layout.deployPath)}
project=${layout.project}
# The compose CLI is found on first use: asking costs a docker process, and most scripts never run compose.
compose_cli=()
find_compose() {
  [ "\${#compose_cli[@]}" -eq 0 ] || return 0
  if docker compose version >/dev/null 2>&1; then compose_cli=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then compose_cli=(docker-compose)
  else echo "neither docker compose nor docker-compose is installed on the server" >&2; exit ${REMOTE_EXIT.noCompose}; fi
}
compose() {
  local dir="$deploy/releases/$1"; shift
  find_compose
  "\${compose_cli[@]}" --project-name "$project" --project-directory "$dir" --file "$dir/docker-compose.yml" --env-file "$dir/.env" "$@"
}
audit() { mkdir -p "$deploy"; printf '%s\\n' "$1" >> "$deploy/deploys.log"; }
${serviceContainer[layout.target ?? 'compose']}`;
}

/**
 * The whole script is one function, called with stdin from /dev/null: bash reads all of it before
 * running anything, so a command that reads stdin (compose exec, docker run) cannot swallow the
 * rest of the script, and a connection cut mid-transfer runs nothing at all. The first line names
 * the step, for --dry-run readers and for tests.
 */
export function remoteScript(layout: RemoteLayout, step: string, body: ShellText): string {
  return `# aidd-devops: ${step.replace(/\n/g, ' ')}\naidd_main() {\n${prelude(layout).text}${body.text.replace(/^\n/, '')}}\naidd_main </dev/null\n`;
}

/** A heredoc whose delimiter cannot occur in the text; quoted, so nothing in it is expanded. */
export function heredoc(text: string): { start: ShellText; body: ShellText } {
  let tag = '';
  do tag = `AIDD_${randomBytes(6).toString('hex').toUpperCase()}`;
  while (text.includes(tag));
  return { start: raw(`<<'${tag}'`), body: raw(`${text.endsWith('\n') ? text : `${text}\n`}${tag}`) };
}

/** Writes `text` to a file named by trusted script text (e.g. "$rel/.env"). */
function writeFile(pathExpr: ShellText, text: string): ShellText {
  const doc = heredoc(text);
  return sh`cat > ${pathExpr} ${doc.start}
${doc.body}`;
}

/**
 * What the deploy decides from: the current release, the kept releases with their records, which of
 * them went live (a deploy or rollback line in the audit log says so), the checksums of the current
 * compose file and .env, and the backups. Printed as NAME=VALUE lines, records as one JSON line each.
 */
const stateReport = sh`
if [ -L "$deploy/current" ]; then echo "current=$(basename "$(readlink "$deploy/current")")"; fi
if [ -f "$deploy/current/docker-compose.yml" ]; then echo "current_compose_sha=$(sha256sum < "$deploy/current/docker-compose.yml" | cut -c1-64)"; fi
if [ -f "$deploy/current/.env" ]; then echo "current_env_sha=$(sha256sum < "$deploy/current/.env" | cut -c1-64)"; fi
if [ -d "$deploy/releases" ]; then
  for dir in "$deploy"/releases/*/; do
    [ -d "$dir" ] || continue
    id=$(basename "$dir")
    echo "release=$id"
    if [ -f "$dir/release.json" ]; then echo "record=$(tr -d '\\n' < "$dir/release.json")"; fi
    if [ -f "$deploy/deploys.log" ] && grep -F "\\"release\\":\\"$id\\"" "$deploy/deploys.log" | grep -qE '"result":"(deployed|ok)"'; then echo "live=$id"; fi
  done
fi
for file in "$deploy"/backups/*; do [ ! -f "$file" ] || echo "backup=$(basename "$file")"; done
`;

/** `running_step=RELEASE/STEP` for each step started apart from a connection whose process still runs. */
const runningSteps = sh`
for pidfile in "$deploy"/releases/*/steps/*.pid; do
  [ -f "$pidfile" ] || continue
  base=\${pidfile%.pid}
  if [ ! -f "$base.status" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "running_step=$(basename "$(dirname "$(dirname "$base")")")/$(basename "$base")"
  fi
done
`;

/** What runs the app: compose (its version), or, on a swarm target, the manager's swarm (its size). */
const orchestratorReport = {
  compose: sh`find_compose
# Compose v2 says its version at once; v1 (Python) takes most of a second, so only its name is shown.
if [ "\${compose_cli[*]}" = "docker compose" ]; then echo "compose=docker compose $(docker compose version --short)"; else echo "compose=\${compose_cli[*]}"; fi
`,
  swarm: sh`swarm=$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.Nodes}}')
case "$swarm" in
  "active true "*) echo "compose=docker stack, a swarm of \${swarm##* } nodes" ;;
  "active false "*) echo "the Docker engine on the server is a swarm worker; deploy to a manager of the swarm (docker node ls there)" >&2; exit ${REMOTE_EXIT.notSwarmManager} ;;
  *) echo "the Docker engine on the server is in no swarm (\${swarm%% *}); make it a manager with aidd cluster init, or deploy with target: compose" >&2; exit ${REMOTE_EXIT.notSwarmManager} ;;
esac
`,
};

/** Facts the deploy needs before touching anything; changes nothing on the server. */
export function preflightScript(layout: RemoteLayout): string {
  return remoteScript(layout, 'preflight', sh`
command -v docker >/dev/null 2>&1 || { echo "docker is not installed on the server" >&2; exit ${REMOTE_EXIT.noDocker}; }
# A user outside the docker group gets "permission denied" here, not at the first compose call.
engine=$(docker version --format '{{.Server.Version}}' 2>&1) || { echo "the Docker engine does not answer $(id -un) on the server: $(printf '%s\n' "$engine" | tail -n 1); add the user to the docker group (sudo usermod -aG docker $(id -un), then log in again) or start dockerd" >&2; exit ${REMOTE_EXIT.noDocker}; }
echo "docker=$engine"
${orchestratorReport[layout.target ?? 'compose']}probe="$deploy"
while [ ! -e "$probe" ]; do probe=$(dirname "$probe"); done
[ -w "$probe" ] || { echo "$deploy is not writable by $(id -un)" >&2; exit ${REMOTE_EXIT.notWritable}; }
echo "disk_free_kb=$(df -Pk "$probe" | awk 'NR==2 {print $4}')"
if [ -d "$deploy/lock" ]; then echo "lock=$(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"; fi
echo "proxy=$(docker inspect --format '{{.State.Status}}' ${PROXY_CONTAINER} 2>/dev/null || echo absent)"
${runningSteps}${stateReport}`);
}

export interface PullRequest {
  registry: string;
  username?: string;
  /** Sent inside the script on stdin, into a throwaway DOCKER_CONFIG that is removed afterwards. */
  token?: string;
  refs: string[];
}

/** Credentials live in a DOCKER_CONFIG of this script's own, removed when it ends: never kept on the server. */
export const throwawayDockerConfig = sh`DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
`;

/** `docker login` into the throwaway DOCKER_CONFIG, the token on stdin; nothing without a token. */
export function registryLogin(request: Pick<PullRequest, 'registry' | 'username' | 'token'>): ShellText {
  if (!request.token) return sh`:`;
  const doc = heredoc(request.token);
  return sh`registry=${request.registry}
docker login "$registry" --username=${request.username ?? 'aidd'} --password-stdin >/dev/null 2>"$DOCKER_CONFIG/login.err" ${doc.start} || { echo "docker login to $registry refused: $(tail -n1 "$DOCKER_CONFIG/login.err")" >&2; exit ${REMOTE_EXIT.loginRefused}; }
${doc.body}`;
}

/**
 * What an image does, leaving out what only describes it (labels, creation time): its layers and the
 * config a container runs with. Two builds of unchanged sources have the same key even when their
 * digests differ (each commit labels its images with its revision), so a deploy keeps the running
 * container of a service whose key did not change.
 */
const CONTENT_KEY_FORMAT =
  '{{json .RootFS.Layers}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}} {{json .Config.WorkingDir}} {{json .Config.User}} ' +
  '{{json .Config.ExposedPorts}} {{json .Config.Healthcheck}} {{json .Config.Volumes}} {{json .Config.StopSignal}} {{json .Config.Shell}}';

/**
 * Pulls every image the server lacks at once, logged in (token never stored on the server) only when
 * one is missing: a digest ref the server already has is not pulled again. Prints `digest REF REPO@DIGEST...` and `content REF KEY` per image.
 */
export function pullScript(layout: RemoteLayout, request: PullRequest): string {
  const login = registryLogin(request);
  return remoteScript(layout, 'pull', sh`
${throwawayDockerConfig}refs=(${request.refs})
# One inspect per image: its digests on the first line, the commit it was built from (its OCI label) on
# the second, what the content key hashes on the third.
inspect() { docker image inspect --format ${`{{join .RepoDigests " "}}\n{{index .Config.Labels "org.opencontainers.image.revision"}}\n${CONTENT_KEY_FORMAT}`} "$1"; }
infos=()
missing=()
for index in "\${!refs[@]}"; do
  ref=\${refs[$index]}
  if [[ "$ref" == *@sha256:* ]] && info=$(inspect "$ref" 2>/dev/null); then infos[$index]=$info; else missing+=("$index"); fi
done
# Logging in is a registry round trip: only when an image is to be pulled.
if [ "\${#missing[@]}" -gt 0 ]; then
${login}
fi
pids=()
for index in "\${missing[@]}"; do
  docker pull --quiet "\${refs[$index]}" >/dev/null 2>"$DOCKER_CONFIG/pull-$index.err" &
  pids[$index]=$!
done
for index in "\${!refs[@]}"; do
  ref=\${refs[$index]}
  if [ -z "\${infos[$index]+set}" ]; then
    wait "\${pids[$index]}" || { echo "pulling $ref failed: $(tail -n1 "$DOCKER_CONFIG/pull-$index.err")" >&2; exit ${REMOTE_EXIT.pullFailed}; }
    infos[$index]=$(inspect "$ref")
  fi
  info=\${infos[$index]}
  echo "digest $ref \${info%%$'\n'*}"
  rest=\${info#*$'\n'}
  echo "revision $ref \${rest%%$'\n'*}"
  echo "content $ref $(printf '%s\n' "\${rest#*$'\n'}" | sha256sum | cut -c1-64)"
done
`);
}

/**
 * Takes the lock atomically (mkdir); prints `held OWNER_JSON`, or `locked` followed by the server's
 * state read under the lock, which is what the deploy then decides from.
 */
export function lockScript(layout: RemoteLayout, ownerJson: string, variables: string[] = []): string {
  // The names go into a sed program: only plain identifiers, whatever the caller passes.
  for (const name of variables) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`lockScript: ${JSON.stringify(name)} is not a variable name`);
  // The values compose gives the variables in the proxy's listen addresses, from the .env that carries over.
  const values = variables.length
    ? sh`for name in ${variables}; do [ ! -f "$deploy/current/.env" ] || sed -n "s/^$name=//p" "$deploy/current/.env" | tail -n 1 | sed "s/^/var $name=/"; done
`
    : sh``;
  return remoteScript(layout, 'lock', sh`
mkdir -p "$deploy"
if ! mkdir "$deploy/lock" 2>/dev/null; then
  echo "held $(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"
  exit 0
fi
${writeFile(raw('"$deploy/lock/owner.json"'), ownerJson)}
echo locked
${values}${stateReport}`);
}

/**
 * Releases the lock only if this run holds it, so a run never frees another run's lock; with
 * `auditLine`, appends it first (a run that ends with an audit line needs one round trip, not two).
 */
export function unlockScript(layout: RemoteLayout, lockId: string, auditLine?: string): string {
  return remoteScript(layout, 'unlock', sh`
${auditLine === undefined ? sh`` : sh`audit ${auditLine}
`}if grep -qF ${lockId} "$deploy/lock/owner.json" 2>/dev/null; then rm -rf "$deploy/lock"; echo unlocked; fi
`);
}

/** Removes the lock and audits it; refuses (prints the steps) while a step started by a deploy still runs. */
export function breakLockScript(layout: RemoteLayout, auditLine: string): string {
  return remoteScript(layout, 'break-lock', sh`
running=$(${runningSteps})
if [ -n "$running" ]; then
  echo "$running" | sed 's/^running_step=//' >&2
  exit ${REMOTE_EXIT.stepStillRunning}
fi
if [ -d "$deploy/lock" ]; then
  echo "broke $(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"
  rm -rf "$deploy/lock"
  audit ${auditLine}
else
  echo "none"
fi
`);
}

export interface ReleaseFiles {
  id: string;
  compose: string;
  releaseJson: string;
  /** New .env content; without it the current release's .env carries over. */
  env?: string;
  /** The app needs variables: without a .env to carry over, the first deploy stops. Otherwise it gets an empty one. */
  envRequired: boolean;
  /** The app's routes in the proxy (apps/PROJECT.caddy) while this release is live; none when nothing is routed. */
  proxyConfig?: string;
}

/** Writes a new release directory, never an existing one; the .env is born 0600 (umask) and never echoed. */
export function uploadScript(layout: RemoteLayout, files: ReleaseFiles): string {
  const envStep = files.env !== undefined
    ? writeFile(raw('"$rel/.env"'), files.env)
    : files.envRequired
      ? sh`if [ -f "$deploy/current/.env" ]; then cp "$deploy/current/.env" "$rel/.env"; else rm -rf "$rel"; echo "the server has no .env yet" >&2; exit ${REMOTE_EXIT.noEnv}; fi`
      : sh`if [ -f "$deploy/current/.env" ]; then cp "$deploy/current/.env" "$rel/.env"; else : > "$rel/.env"; fi`;
  return remoteScript(layout, 'upload', sh`
id=${files.id}
rel="$deploy/releases/$id"
mkdir -p "$deploy/releases" "$deploy/backups"
mkdir "$rel" 2>/dev/null || { echo "release $id already exists on the server" >&2; exit ${REMOTE_EXIT.releaseExists}; }
${writeFile(raw('"$rel/docker-compose.yml"'), files.compose)}
${writeFile(raw('"$rel/release.json"'), files.releaseJson)}
${envStep}
chmod 600 "$rel/.env"
${files.proxyConfig === undefined ? sh`` : writeFile(raw('"$rel/proxy.caddy"'), files.proxyConfig)}
echo uploaded
`);
}

export interface BackupSpec {
  service: string;
  /** Run inside the service container with sh -c; writes the dump to stdout. */
  command: string;
  extension: string;
  /** Run inside the service container with sh -c; reads a dump on stdin and replaces the database with it. */
  restore?: string;
}

/** The file a backup taken before deploying release `id` is saved as, under backups/. */
export function backupFileName(id: string, backup: BackupSpec): string {
  return `${id}.${backup.extension}`;
}

/** Dumps the database of the running release into backups/; fails when there is nothing to dump from. */
export function backupScript(layout: RemoteLayout, current: string, id: string, backup: BackupSpec): string {
  return remoteScript(layout, 'backup', sh`
current=${current}
service=${backup.service}
out="$deploy/backups/"${backupFileName(id, backup)}
container=$(service_container "$service")
if [ -z "$container" ]; then
  echo "no running $service container to back up" >&2; exit ${REMOTE_EXIT.backupFailed}
fi
mkdir -p "$deploy/backups"
if ! docker exec "$container" sh -c ${backup.command} > "$out.partial"; then
  rm -f "$out.partial"; echo "database backup failed" >&2; exit ${REMOTE_EXIT.backupFailed}
fi
mv "$out.partial" "$out"
echo "saved $out $(stat -c %s "$out") bytes"
`);
}

/**
 * Replaces the database of the live release with a backup. The other services stop meanwhile, so
 * nothing writes during the restore, and the whole stack is started again whatever happened.
 */
export function restoreScript(layout: RemoteLayout, current: string, file: string, restore: string, service: string): string {
  return remoteScript(layout, 'restore', sh`
current=${current}
service=${service}
file="$deploy/backups/"${file}
[ -f "$file" ] || { echo "there is no backup $(basename "$file") on the server" >&2; exit ${REMOTE_EXIT.noBackup}; }
container=$(service_container "$service")
if [ -z "$container" ]; then
  echo "no running $service container to restore into" >&2; exit ${REMOTE_EXIT.restoreFailed}
fi
log=$(mktemp)
mapfile -t others < <(compose "$current" config --services | grep -vxF "$service" || true)
[ "\${#others[@]}" -eq 0 ] || compose "$current" stop "\${others[@]}" >"$log" 2>&1
restored=0
docker exec -i "$container" sh -c ${restore} < "$file" >>"$log" 2>&1 || restored=$?
compose "$current" up -d >>"$log" 2>&1 || true
if [ "$restored" -ne 0 ]; then
  tail -n 20 "$log" >&2; rm -f "$log"
  echo "restoring $(basename "$file") failed" >&2; exit ${REMOTE_EXIT.restoreFailed}
fi
rm -f "$log"
echo "restored $(basename "$file") into the database of $current"
`);
}

export interface MigrateSpec {
  service: string;
  command: string[];
  /** Services the migration needs running first (the database). */
  needs: string[];
}

/** Starts what the migration needs and runs it as a one-off container of the new release. */
export function migrateScript(layout: RemoteLayout, id: string, migrate: MigrateSpec, timeoutSeconds: number): string {
  const wait = migrate.needs.length
    ? sh`# Started only where they do not run yet (a first deploy): a running database is migrated as it is.
for service in ${migrate.needs}; do
  [ -n "$(service_container "$service")" ] || { compose "$id" up -d --no-deps ${migrate.needs} 2>&1 | tail -n 5 >&2; break; }
done
deadline=$(( $(date +%s) + ${timeoutSeconds} ))
for service in ${migrate.needs}; do
  # healthy, or simply running for a service without a healthcheck
  until case "$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$(service_container "$service")" 2>/dev/null)" in healthy|running) true;; *) false;; esac; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$service did not become healthy within \${timeout}s" >&2; exit ${REMOTE_EXIT.migrateFailed}; }
    sleep 0.2
  done
done`
    : sh``;
  return remoteScript(layout, 'migrate', sh`
id=${id}
timeout=${timeoutSeconds}
${wait}
if ! compose "$id" run --rm --no-deps -T ${migrate.service} ${migrate.command} 2>&1 | tail -n 20 >&2; then
  echo "migration failed" >&2; exit ${REMOTE_EXIT.migrateFailed}
fi
echo migrated
`);
}

/** Removes a release that never went live (its migration or upload failed). */
export function discardReleaseScript(layout: RemoteLayout, id: string, auditLine: string): string {
  return remoteScript(layout, 'discard', sh`
id=${id}
rm -rf "$deploy/releases/$id"
audit ${auditLine}
`);
}

/** A service the proxy routes to, and the slot port its container publishes `port` on in a release. */
export interface RoutedService {
  service: string;
  port: number;
  hostPort: number;
}

/** A routed service's own healthcheck command (argv), run in a new container between docker's checks. */
export type ReadinessProbes = Record<string, string[]>;

export interface SwitchPlan {
  /** Routed services in start order (dependencies first); each is switched beside its running container. */
  routed: RoutedService[];
  /** Every other service of the release: started, or replaced in place when changed. */
  direct: string[];
  /** Of `direct`, those known to be unchanged: compose is not asked about them while they run. */
  settled: string[];
  /** PORT=SERVICE for each port the proxy listens on for the app, to name the service when the port is taken. */
  listeners: string[];
  /** The proxy's image, for starting the proxy where it does not run yet. */
  proxyImage: string;
  proxyMainConfig: string;
  /** How long a new container may take to become healthy. */
  healthTimeoutSeconds: number;
  /** Per routed service: its healthcheck command, so readiness is seen within 0.2 s instead of at docker's next check. */
  probes: ReadinessProbes;
}

/** Prints why compose up failed in one line: compose's own words and the services that are not healthy. */
const composeFailed = sh`compose_failed() {
  tail -n 20 "$log" >&2
  # compose v1 ends with a generic "Encountered errors"; its "ERROR: for SERVICE" line says what broke.
  said=$( { grep -E '^ERROR: for |[Ee]rror' "$log" | grep -v 'Encountered errors' || grep -v '^[[:space:]]*$' "$log"; } | tail -n 1 || true); rm -f "$log"
  not_healthy=$(docker ps --all --filter "label=com.docker.compose.project=$project" --format '{{.Label "com.docker.compose.service"}} ({{.Status}})' | grep -v '(healthy)' | paste -sd, - || true)
  echo "compose up failed: \${said:-no output}; not healthy: \${not_healthy:-none}" >&2
  exit 1
}
`;

/** The app's routes leave the proxy (the release has none): their listen ports go back to compose. */
const dropRoutes = sh`if [ "$(docker inspect --format '{{.State.Running}}' "$proxy" 2>/dev/null)" = true ] && docker exec "$proxy" test -f "$app_file"; then
  docker exec "$proxy" rm -f "$app_file"
  docker exec "$proxy" caddy reload --config "$proxy_config" --adapter caddyfile >/dev/null 2>&1 || true
fi
`;

/**
 * Makes a release the running one. Without routed services: compose up, as by hand. With them, no
 * request fails: services nothing routes to are started or replaced in place; a routed service whose
 * container publishes the other slot gets a new container beside it (compose scales it up by one);
 * once every new container is healthy the old ones are stopped (SIGTERM: in-flight requests finish)
 * and the proxy, which routes to whichever slot is healthy, sends everything to the new ones. A new
 * container that never turns healthy is removed: the old ones keep serving. The proxy is reloaded
 * only when the app's routes change (see proxy.ts for why). The same script rolls back, since it only
 * converges the containers on a release's compose file and routes.
 */
export function switchScript(layout: RemoteLayout, id: string, plan: SwitchPlan): string {
  const common = sh`id=${id}
rel="$deploy/releases/$id"
[ -d "$rel" ] || { echo "release $id does not exist on the server" >&2; exit ${REMOTE_EXIT.noRelease}; }
proxy=${PROXY_CONTAINER}
proxy_config=${`${PROXY_CONFIG_DIR}/Caddyfile`}
app_file=${`${PROXY_CONFIG_DIR}/apps/${layout.project}.caddy`}
log=$(mktemp)
# Found once here: the routed services' compose calls run side by side.
find_compose
${composeFailed}`;
  if (plan.routed.length === 0) {
    return remoteScript(layout, 'switch', sh`
${common}${dropRoutes}compose "$id" up -d --remove-orphans >"$log" 2>&1 || compose_failed
rm -f "$log"
echo started
`);
  }
  const main = heredoc(plan.proxyMainConfig);
  return remoteScript(layout, 'switch', sh`
${common}timeout=${plan.healthTimeoutSeconds}
proxy_image=${plan.proxyImage}
containers_of() { docker ps --all --quiet --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" --filter label=com.docker.compose.oneoff=False; }
publishes() { docker port "$1" "$2/tcp" 2>/dev/null | grep -q ":$3\$"; }
state_of() { docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1" 2>/dev/null || echo gone; }
routed=(${plan.routed.map((route) => `${route.service}:${route.port}:${route.hostPort}`)})
settled=(${plan.settled})
direct=()
for service in ${plan.direct}; do
  keep=0
  for unchanged in "\${settled[@]}"; do [ "$unchanged" != "$service" ] || keep=1; done
  if [ "$keep" = 1 ] && [ -n "$(service_container "$service")" ]; then continue; fi
  direct+=("$service")
done
listeners=(${plan.listeners})
# Whatever has no container yet starts in dependency order (a first deploy, a new service); nothing
# running is replaced here.
missing=0
for entry in "\${routed[@]}"; do [ -n "$(containers_of "\${entry%%:*}")" ] || missing=1; done
if [ "$missing" = 1 ]; then compose "$id" up -d --no-recreate --remove-orphans >"$log" 2>&1 || compose_failed; fi

# Then the services nothing routes to converge, replaced in place if changed; then each routed service
# whose containers publish another slot gets a new container beside them, one compose call per service,
# side by side (a single call would start a service only once those it depends on are healthy). Compose
# v1 is not safe to run beside a call that replaces containers, so the replacing call goes first.
old=()
new=()
jobs=()
remove_new() { local entry; for entry in "\${new[@]}"; do docker stop --time 30 "\${entry#*:}" >/dev/null 2>&1 || true; docker rm -f "\${entry#*:}" >/dev/null 2>&1 || true; done; }
if [ "\${#direct[@]}" -gt 0 ]; then compose "$id" up -d --no-deps --remove-orphans "\${direct[@]}" >>"$log" 2>&1 || compose_failed; fi
scales=()
for index in "\${!routed[@]}"; do
  IFS=: read -r service port host_port <<<"\${routed[$index]}"
  current=()
  stale=()
  for container in $(containers_of "$service"); do
    if publishes "$container" "$port" "$host_port"; then stale+=("$container"); else current+=("$container"); fi
  done
  [ "\${#current[@]}" -gt 0 ] || continue
  # Left by a switch that stopped halfway: never made healthy, so removed before starting afresh.
  [ "\${#stale[@]}" -eq 0 ] || docker rm -f "\${stale[@]}" >/dev/null
  scales+=("$index=$(( \${#current[@]} + 1 ))")
  old+=("\${current[@]}")
done
for scale in "\${scales[@]}"; do
  index=\${scale%%=*}
  IFS=: read -r service _ <<<"\${routed[$index]}"
  compose "$id" up -d --no-deps --no-recreate --scale "$service=\${scale#*=}" "$service" >"$log.$index" 2>&1 &
  jobs+=("$!:$index")
done
failed=()
for job in "\${jobs[@]}"; do wait "\${job%%:*}" || failed+=("\${job#*:}"); done
for index in "\${!routed[@]}"; do
  [ -f "$log.$index" ] || continue
  IFS=: read -r service port host_port <<<"\${routed[$index]}"
  for container in $(containers_of "$service"); do ! publishes "$container" "$port" "$host_port" || new+=("$index:$container"); done
done
for job in "\${jobs[@]}"; do cat "$log.\${job#*:}" >> "$log"; rm -f "$log.\${job#*:}"; done
if [ "\${#failed[@]}" -gt 0 ]; then remove_new; compose_failed; fi

# Healthy: docker says so, or the service's own healthcheck passes when run now; polled every 0.2 s
# up to one deadline, so a ready container is switched to at once instead of at docker's next check.
${raw(plan.routed.map((route, index) => (plan.probes[route.service] ? sh`probe_${raw(String(index))}() { timeout 10 docker exec "$1" ${plan.probes[route.service]!} >/dev/null 2>&1; }
`.text : `probe_${index}() { return 1; }
`)).join(''))}deadline=$(( $(date +%s) + timeout ))
for entry in "\${new[@]}"; do
  index=\${entry%%:*}
  container=\${entry#*:}
  service=\${routed[$index]%%:*}
  while :; do
    state=$(state_of "$container")
    case "$state" in
      "running healthy"|"running none") break ;;
      "running starting") ! "probe_$index" "$container" || break ;;
    esac
    case "$state" in
      *unhealthy|exited*|dead*|gone) ;;
      *) if [ "$(date +%s)" -lt "$deadline" ]; then sleep 0.2; continue; fi ;;
    esac
    last=$(docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}' "$container" 2>/dev/null | tr '\\n' ' ' | tail -c 200 || true)
    remove_new
    rm -f "$log"
    echo "the new $service container did not become healthy (\${state}\${last:+: $last}); it was removed, and the running one keeps serving" >&2
    exit 1
  done
done

# The proxy: started where it does not run (its config and certificates live in volumes); this app's
# routes written and the proxy reloaded only when they changed. A reload that fails puts the previous
# routes back.
main_file="$log.main"
cat > "$main_file" ${main.start}
${main.body}
if [ "$(docker inspect --format '{{.State.Running}}' "$proxy" 2>/dev/null)" != true ]; then
  docker rm -f "$proxy" >/dev/null 2>&1 || true
  docker image inspect "$proxy_image" >/dev/null 2>&1 || docker pull --quiet "$proxy_image" >/dev/null
  docker run --rm -i --volume ${PROXY_VOLUMES.config}:${PROXY_CONFIG_DIR} --entrypoint sh "$proxy_image" -c 'mkdir -p "$1/apps" && cat > "$1/Caddyfile"' sh ${PROXY_CONFIG_DIR} < "$main_file"
  docker run --detach --name "$proxy" --network host --restart unless-stopped --label aidd.proxy=caddy \\
    --volume ${PROXY_VOLUMES.config}:${PROXY_CONFIG_DIR} --volume ${PROXY_VOLUMES.data}:/data --env XDG_DATA_HOME=/data --env XDG_CONFIG_HOME=/config \\
    "$proxy_image" caddy run --config "$proxy_config" --adapter caddyfile >/dev/null
  for _ in $(seq 100); do ! docker exec "$proxy" test -S ${PROXY_ADMIN_SOCKET} || break; sleep 0.1; done
elif ! docker exec "$proxy" cat "$proxy_config" | cmp -s - "$main_file"; then
  docker exec -i "$proxy" sh -c 'cat > "$1"' sh "$proxy_config" < "$main_file"
  changed=1
fi
rm -f "$main_file"
reload() { docker exec "$proxy" caddy reload --config "$proxy_config" --adapter caddyfile >"$log" 2>&1; }
holders=()
if ! docker exec "$proxy" cat "$app_file" 2>/dev/null | cmp -s - "$rel/proxy.caddy"; then
  # A port the routes add that another program holds makes the reload fail, and a failed reload leaves
  # behind the sockets Caddy opened for it (caddy#7175), which then answer with stale routes: so each
  # port the proxy does not serve yet is tried first. One a container of the live release publishes (the
  # first switch from a release without the proxy) is freed by stopping that container; any other holder
  # stops the deploy here, before the routes change.
  served=$(docker exec "$proxy" sh -c 'cat "$1"/*.caddy 2>/dev/null || true' sh ${`${PROXY_CONFIG_DIR}/apps`} | { grep -oE '^https?://[^ {]*:[0-9]+' || true; } | sed 's/.*://' | sort -u)
  for listener in "\${listeners[@]}"; do
    port=\${listener%%=*}
    ! grep -qx "$port" <<<"$served" || continue
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || continue
    held=
    for container in "\${old[@]}"; do ! docker port "$container" 2>/dev/null | grep -q ":$port\$" || { holders+=("$container"); held=1; }; done
    if [ -z "$held" ]; then
      remove_new
      rm -f "$log"
      echo "the proxy cannot listen on 127.0.0.1:$port for \${listener#*=}: address already in use (another program holds it); free it or publish the service on another port" >&2
      exit 1
    fi
  done
  [ "\${#holders[@]}" -eq 0 ] || docker stop --time 30 "\${holders[@]}" >/dev/null
  docker exec "$proxy" sh -c '[ ! -f "$1" ] || cp "$1" "$1.previous"' sh "$app_file"
  docker exec -i "$proxy" sh -c 'cat > "$1"' sh "$app_file" < "$rel/proxy.caddy"
  changed=1
fi
# A reload that fails on a port a container of the live release publishes on an address the check above
# cannot reach stops that container and tries once more; one that still fails (the port taken
# meanwhile, a bad site) puts the previous routes back.
if [ "\${changed:-0}" = 1 ] && ! reload && ! {
  busy=$(grep -o 'listen tcp [^ ]*: bind: address already in use' "$log" | head -n 1 | sed 's/^listen tcp //; s/: bind.*//' || true)
  late=()
  if [ -n "$busy" ]; then
    for container in "\${old[@]}"; do ! docker port "$container" 2>/dev/null | grep -q ":\${busy##*:}\$" || late+=("$container"); done
  fi
  [ "\${#late[@]}" -gt 0 ] && docker stop --time 30 "\${late[@]}" >/dev/null && holders+=("\${late[@]}") && reload
}; then
  said=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | tail -c 300)
  busy=$(grep -o 'listen tcp [^ ]*: bind: address already in use' "$log" | head -n 1 | sed 's/^listen tcp //; s/: bind.*//' || true)
  docker exec "$proxy" sh -c 'if [ -f "$1.previous" ]; then mv "$1.previous" "$1"; else rm -f "$1"; fi' sh "$app_file"
  reload || true
  [ "\${#holders[@]}" -eq 0 ] || docker start "\${holders[@]}" >/dev/null 2>&1 || true
  remove_new
  rm -f "$log"
  if [ -n "$busy" ]; then
    who=
    for listener in "\${listeners[@]}"; do [ "\${listener%%=*}" != "\${busy##*:}" ] || who=\${listener#*=}; done
    echo "the proxy cannot listen on $busy\${who:+ for $who}: address already in use (another program holds it); free it or publish the service on another port" >&2
  else
    echo "the proxy refused the new routes: $said" >&2
  fi
  exit 1
fi
docker exec "$proxy" rm -f "$app_file.previous"

# Drained: SIGTERM lets the old containers finish their in-flight requests; a request that reaches one
# as it stops is retried on the new one, which the proxy has found healthy by then.
if [ "\${#old[@]}" -gt 0 ]; then
  docker stop --time 30 "\${old[@]}" >/dev/null
  docker rm "\${old[@]}" >/dev/null
fi
rm -f "$log"
echo "started"
`);
}

/**
 * Starts a step that must not stop halfway (backup, migrate, switch) apart from the connection: in a
 * session of its own (setsid), bounded by `timeout`, its output, pid and exit status kept in the
 * release's steps/ directory (its script only until it starts). A dropped connection, a killed ssh or a Ctrl-C
 * cannot cut it; waitStepScript says when it is over.
 */
export function startStepScript(layout: RemoteLayout, release: string, step: string, script: string, timeoutSeconds: number): string {
  const doc = heredoc(script);
  return remoteScript(layout, `start ${step}`, sh`
id=${release}
step=${step}
base="$deploy/releases/$id/steps/$step"
mkdir -p "$deploy/releases/$id/steps"
rm -f "$base".*
cat > "$base.sh" ${doc.start}
${doc.body}
# The script is opened and removed before the step runs: it may carry credentials (a registry token).
setsid bash -c 'exec 3< "$1.sh"; rm -f "$1.sh"; echo $$ > "$1.pid"; timeout --kill-after=30 "$2" bash -s <&3 3<&- > "$1.out" 2> "$1.err"; echo $? > "$1.status.new"; mv "$1.status.new" "$1.status"' step "$base" ${timeoutSeconds} < /dev/null > /dev/null 2>&1 &
for _ in $(seq 50); do [ ! -f "$base.pid" ] || break; sleep 0.1; done
echo "started $id/$step"
`);
}

/**
 * Waits up to `seconds` for a started step. When it is over: its output, then `step-status=N` (or
 * `lost` when its process died without one), exit 0; while it runs: exit stepRunning. Any other exit
 * is the connection's, never the step's.
 */
export function waitStepScript(layout: RemoteLayout, release: string, step: string, seconds: number): string {
  return remoteScript(layout, `wait ${step}`, sh`
id=${release}
step=${step}
base="$deploy/releases/$id/steps/$step"
end=$(( $(date +%s) + ${seconds} ))
until [ -f "$base.status" ]; do
  if [ -f "$base.pid" ] && ! kill -0 "$(cat "$base.pid")" 2>/dev/null && [ ! -f "$base.status" ]; then
    echo "the $step step of release $id stopped without an exit status (was the server restarted?)" >&2
    echo "step-status=lost"
    exit 0
  fi
  [ "$(date +%s)" -lt "$end" ] || exit ${REMOTE_EXIT.stepRunning}
  sleep 0.1
done
cat "$base.out"
cat "$base.err" >&2
echo "step-status=$(cat "$base.status")"
`);
}

export interface PrunePolicy {
  /** How many of the newest releases (and backups) to keep. */
  keep: number;
  /** Releases kept whatever their age, with their images and backups: the rollback target. */
  protect: string[];
}

/**
 * Points `current` at a release atomically and records the audit line, then prunes: the newest
 * releases, the live one and the protected ones stay with every image they use and their backups.
 */
export function finishScript(layout: RemoteLayout, id: string, auditLine: string, prune: PrunePolicy): string {
  return remoteScript(layout, 'finish', sh`
id=${id}
keep=${prune.keep}
protected=(${[id, ...prune.protect]})
ln -sfn "releases/$id" "$deploy/current.new" && mv -T "$deploy/current.new" "$deploy/current"
audit ${auditLine}
is_protected() { local item; for item in "\${protected[@]}"; do [ "$item" != "$1" ] || return 0; done; return 1; }
cd "$deploy/releases"
mapfile -t all < <(ls -1 | sort)
count=\${#all[@]}
if (( count > keep )); then
  images_of() { for release in "$@"; do sed -n 's/^ *image: *//p' "$release/docker-compose.yml"; done | tr -d '"' | sort -u; }
  kept_images=$(images_of "\${all[@]:count-keep}" "\${protected[@]}")
  for release in "\${all[@]:0:count-keep}"; do
    ! is_protected "$release" || continue
    for image in $(images_of "$release"); do
      grep -qxF "$image" <<<"$kept_images" || docker image rm "$image" >/dev/null 2>&1 || true
    done
    rm -rf "$release"
    echo "pruned $release"
  done
fi
[ -d "$deploy/backups" ] || exit 0
cd "$deploy/backups"
mapfile -t backups < <(ls -1t)
for backup in "\${backups[@]:keep}"; do
  ! is_protected "\${backup%.*}" || continue
  rm -f "$backup"
  echo "pruned backup $backup"
done
`);
}

/** Appends one JSON line to the audit log. */
export function auditScript(layout: RemoteLayout, auditLine: string): string {
  return remoteScript(layout, 'audit', sh`
audit ${auditLine}
`);
}

/** Prints the audit log's last lines. */
export function historyScript(layout: RemoteLayout, lines: number): string {
  return remoteScript(layout, 'history', sh`
[ -f "$deploy/deploys.log" ] && tail -n ${lines} "$deploy/deploys.log" || true
`);
}

/** The live release's compose file and .env, base64 on one line each: what a --diff compares with. */
export function currentFilesScript(layout: RemoteLayout): string {
  return remoteScript(layout, 'current-files', sh`
if [ -f "$deploy/current/docker-compose.yml" ]; then echo "compose=$(base64 -w0 < "$deploy/current/docker-compose.yml")"; fi
if [ -f "$deploy/current/.env" ]; then echo "env=$(base64 -w0 < "$deploy/current/.env")"; fi
`);
}

/** Prints a release's record. */
export function releaseRecordScript(layout: RemoteLayout, id: string): string {
  return remoteScript(layout, 'release-record', sh`
id=${id}
cat "$deploy/releases/$id/release.json"
`);
}

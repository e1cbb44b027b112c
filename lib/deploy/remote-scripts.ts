// Bash scripts the deploy runs on the server, built by pure functions so tests and --dry-run see
// exactly what would run. Every script starts from the same prelude: strict mode, umask 077 (files
// holding secrets are born 0600), the deploy path, and a `compose` function bound to one release.
import { randomBytes } from 'node:crypto';
import { shellQuote } from '../core/exec.ts';

export interface RemoteLayout {
  /** Deploy path on the server; `~/x` means under the deploy user's home. */
  deployPath: string;
  /** Compose project name shared by every release, so volumes carry over. */
  project: string;
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
} as const;

function deployPathExpr(deployPath: string): string {
  return deployPath.startsWith('~/') ? `"$HOME"/${shellQuote(deployPath.slice(2))}` : shellQuote(deployPath);
}

export function prelude(layout: RemoteLayout): string {
  return [
    'set -euo pipefail',
    'umask 077',
    `deploy=${deployPathExpr(layout.deployPath)}`,
    `project=${shellQuote(layout.project)}`,
    'if docker compose version >/dev/null 2>&1; then compose_cli=(docker compose)',
    'elif command -v docker-compose >/dev/null 2>&1; then compose_cli=(docker-compose)',
    `else compose_cli=(); fi`,
    'compose() {',
    '  local dir="$deploy/releases/$1"; shift',
    `  [ "\${#compose_cli[@]}" -gt 0 ] || { echo "neither docker compose nor docker-compose is installed on the server" >&2; exit ${REMOTE_EXIT.noCompose}; }`,
    '  "${compose_cli[@]}" --project-name "$project" --project-directory "$dir" --file "$dir/docker-compose.yml" --env-file "$dir/.env" "$@"',
    '}',
    'audit() { mkdir -p "$deploy"; printf \'%s\\n\' "$1" >> "$deploy/deploys.log"; }',
    '',
  ].join('\n');
}

/**
 * The whole script is one function, called with stdin from /dev/null: bash reads all of it before
 * running anything, so a command that reads stdin (compose exec, docker run) cannot swallow the
 * rest of the script, and a connection cut mid-transfer runs nothing at all.
 */
export function remoteScript(layout: RemoteLayout, body: string): string {
  return `aidd_main() {\n${prelude(layout)}${body.replace(/^\n/, '')}}\naidd_main </dev/null\n`;
}

/** A heredoc whose delimiter cannot occur in the text; quoted, so nothing in it is expanded. */
export function heredoc(text: string): { start: string; body: string } {
  let tag = '';
  do tag = `AIDD_${randomBytes(6).toString('hex').toUpperCase()}`;
  while (text.includes(tag));
  return { start: `<<'${tag}'`, body: `${text.endsWith('\n') ? text : `${text}\n`}${tag}` };
}

function writeFile(pathExpr: string, text: string): string {
  const doc = heredoc(text);
  return `cat > ${pathExpr} ${doc.start}\n${doc.body}`;
}

/** Facts the deploy needs before touching anything; changes nothing on the server. */
export function preflightScript(layout: RemoteLayout): string {
  return remoteScript(layout, `
command -v docker >/dev/null 2>&1 || { echo "docker is not installed on the server" >&2; exit ${REMOTE_EXIT.noDocker}; }
echo "docker=$(docker version --format '{{.Server.Version}}')"
[ "\${#compose_cli[@]}" -gt 0 ] || { echo "neither docker compose nor docker-compose is installed on the server" >&2; exit ${REMOTE_EXIT.noCompose}; }
echo "compose=\${compose_cli[*]} $("\${compose_cli[@]}" version --short)"
probe="$deploy"
while [ ! -e "$probe" ]; do probe=$(dirname "$probe"); done
[ -w "$probe" ] || { echo "$deploy is not writable by $(id -un)" >&2; exit ${REMOTE_EXIT.notWritable}; }
echo "disk_free_kb=$(df -Pk "$probe" | awk 'NR==2 {print $4}')"
if [ -L "$deploy/current" ]; then echo "current=$(basename "$(readlink "$deploy/current")")"; fi
if [ -d "$deploy/releases" ]; then echo "releases=$(ls -1 "$deploy/releases" | tr '\\n' ' ')"; fi
if [ -d "$deploy/lock" ]; then echo "lock=$(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"; fi
if [ -f "$deploy/current/docker-compose.yml" ]; then echo "current_compose_sha=$(sha256sum < "$deploy/current/docker-compose.yml" | cut -c1-64)"; fi
if [ -f "$deploy/current/.env" ]; then echo "current_env_sha=$(sha256sum < "$deploy/current/.env" | cut -c1-64)"; fi
`);
}

export interface PullRequest {
  registry: string;
  username?: string;
  /** Sent inside the script on stdin, into a throwaway DOCKER_CONFIG that is removed afterwards. */
  token?: string;
  refs: string[];
}

/** Logs in (token never stored on the server) and pulls; prints `digest REF REPO@DIGEST` per image. */
export function pullScript(layout: RemoteLayout, request: PullRequest): string {
  const login = request.token
    ? (() => {
        const doc = heredoc(request.token);
        return `docker login ${shellQuote(request.registry)} --username ${shellQuote(request.username ?? 'aidd')} --password-stdin >/dev/null 2>"$DOCKER_CONFIG/login.err" ${doc.start} || { echo "docker login to ${request.registry} refused: $(tail -n1 "$DOCKER_CONFIG/login.err")" >&2; exit ${REMOTE_EXIT.loginRefused}; }\n${doc.body}`;
      })()
    : '';
  const pulls = request.refs
    .map(
      (ref) =>
        `docker pull --quiet ${shellQuote(ref)} >/dev/null 2>"$DOCKER_CONFIG/pull.err" || { echo "pulling ${ref} failed: $(tail -n1 "$DOCKER_CONFIG/pull.err")" >&2; exit ${REMOTE_EXIT.pullFailed}; }\n` +
        `echo "digest ${ref} $(docker image inspect --format '{{join .RepoDigests " "}}' ${shellQuote(ref)})"`,
    )
    .join('\n');
  return remoteScript(layout, `
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
${login}
${pulls}
`);
}

/** Takes the lock atomically (mkdir); prints `locked` or `held OWNER_JSON`. */
export function lockScript(layout: RemoteLayout, ownerJson: string): string {
  return remoteScript(layout, `
mkdir -p "$deploy"
if mkdir "$deploy/lock" 2>/dev/null; then
  ${writeFile('"$deploy/lock/owner.json"', ownerJson)}
  echo locked
else
  echo "held $(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"
fi
`);
}

/** Releases the lock only if this run holds it, so a run never frees another run's lock. */
export function unlockScript(layout: RemoteLayout, lockId: string): string {
  return remoteScript(layout, `
if grep -qF ${shellQuote(lockId)} "$deploy/lock/owner.json" 2>/dev/null; then rm -rf "$deploy/lock"; echo unlocked; fi
`);
}

export function breakLockScript(layout: RemoteLayout, auditLine: string): string {
  return remoteScript(layout, `
if [ -d "$deploy/lock" ]; then
  echo "broke $(tr -d '\\n' < "$deploy/lock/owner.json" 2>/dev/null || echo '{}')"
  rm -rf "$deploy/lock"
  audit ${shellQuote(auditLine)}
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
}

/** Writes a release directory; the .env is born 0600 (umask) and never echoed. */
export function uploadScript(layout: RemoteLayout, files: ReleaseFiles): string {
  const envStep = files.env !== undefined
    ? writeFile('"$rel/.env"', files.env)
    : `if [ -f "$deploy/current/.env" ]; then cp "$deploy/current/.env" "$rel/.env"; else rm -rf "$rel"; echo "the server has no .env yet" >&2; exit ${REMOTE_EXIT.noEnv}; fi`;
  return remoteScript(layout, `
rel="$deploy/releases/${files.id}"
mkdir -p "$deploy/releases" "$deploy/backups" "$rel"
${writeFile('"$rel/docker-compose.yml"', files.compose)}
${writeFile('"$rel/release.json"', files.releaseJson)}
${envStep}
chmod 600 "$rel/.env"
echo uploaded
`);
}

export interface BackupSpec {
  service: string;
  /** Run inside the service container with sh -c; writes the dump to stdout. */
  command: string;
  extension: string;
}

/** Dumps the database of the running release into backups/, keeping the newest `keep`. */
export function backupScript(layout: RemoteLayout, current: string, id: string, backup: BackupSpec, keep: number): string {
  return remoteScript(layout, `
container=$(compose ${shellQuote(current)} ps -q ${shellQuote(backup.service)} 2>/dev/null || true)
if [ -z "$container" ]; then echo "skipped (no running ${backup.service})"; exit 0; fi
out="$deploy/backups/${id}.${backup.extension}"
if ! compose ${shellQuote(current)} exec -T ${shellQuote(backup.service)} sh -c ${shellQuote(backup.command)} > "$out.partial"; then
  rm -f "$out.partial"; echo "database backup failed" >&2; exit ${REMOTE_EXIT.backupFailed}
fi
mv "$out.partial" "$out"
ls -1t "$deploy/backups"/*.${backup.extension} | tail -n +${keep + 1} | xargs -r rm -f
echo "saved $out $(stat -c %s "$out") bytes"
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
  const needs = migrate.needs.map(shellQuote).join(' ');
  const wait = migrate.needs.length
    ? `compose ${id} up -d --no-deps ${needs} 2>&1 | tail -n 5 >&2
deadline=$(( $(date +%s) + ${timeoutSeconds} ))
for service in ${needs}; do
  # healthy, or simply running for a service without a healthcheck
  until case "$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$(compose ${id} ps -q "$service")")" in healthy|running) true;; *) false;; esac; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$service did not become healthy within ${timeoutSeconds}s" >&2; exit ${REMOTE_EXIT.migrateFailed}; }
    sleep 1
  done
done`
    : '';
  return remoteScript(layout, `
${wait}
if ! compose ${id} run --rm --no-deps -T ${shellQuote(migrate.service)} ${migrate.command.map(shellQuote).join(' ')} 2>&1 | tail -n 20 >&2; then
  echo "migration failed" >&2; exit ${REMOTE_EXIT.migrateFailed}
fi
echo migrated
`);
}

/** Removes a release that never went live (its migration or upload failed). */
export function discardReleaseScript(layout: RemoteLayout, id: string, auditLine: string): string {
  return remoteScript(layout, `
rm -rf "$deploy/releases/${id}"
audit ${shellQuote(auditLine)}
`);
}

/** Starts a release's services; containers whose config is unchanged are left running. */
export function upScript(layout: RemoteLayout, id: string): string {
  return remoteScript(layout, `
[ -d "$deploy/releases/${id}" ] || { echo "release ${id} does not exist on the server" >&2; exit ${REMOTE_EXIT.noRelease}; }
log=$(mktemp)
if ! compose ${id} up -d --remove-orphans >"$log" 2>&1; then
  tail -n 20 "$log" >&2; rm -f "$log"
  # compose's last line says little; name the services that are not healthy.
  not_healthy=$(docker ps --all --filter "label=com.docker.compose.project=$project" --format '{{.Label "com.docker.compose.service"}} ({{.Status}})' | grep -v '(healthy)' | paste -sd, - || true)
  echo "compose up failed; not healthy: \${not_healthy:-none}" >&2
  exit 1
fi
rm -f "$log"
echo started
`);
}

/** Points `current` at a release atomically, records the audit line, prunes old releases and their images. */
export function finishScript(layout: RemoteLayout, id: string, auditLine: string, keep: number): string {
  return remoteScript(layout, `
ln -sfn "releases/${id}" "$deploy/current.new" && mv -T "$deploy/current.new" "$deploy/current"
audit ${shellQuote(auditLine)}
cd "$deploy/releases"
mapfile -t all < <(ls -1 | sort)
count=\${#all[@]}
(( count > ${keep} )) || exit 0
images_of() { for release in "$@"; do sed -n 's/^ *image: *//p' "$release/docker-compose.yml"; done | tr -d '"' | sort -u; }
# The newest ${keep} releases and the current one stay, with every image they use.
kept_images=$(images_of "\${all[@]:count-${keep}}" ${shellQuote(id)})
for release in "\${all[@]:0:count-${keep}}"; do
  [ "$release" != ${shellQuote(id)} ] || continue
  for image in $(images_of "$release"); do
    grep -qxF "$image" <<<"$kept_images" || docker image rm "$image" >/dev/null 2>&1 || true
  done
  rm -rf "$release"
  echo "pruned $release"
done
`);
}

/** Appends one JSON line to the audit log. */
export function auditScript(layout: RemoteLayout, auditLine: string): string {
  return remoteScript(layout, `
audit ${shellQuote(auditLine)}
`);
}

/** Prints the audit log's last lines. */
export function historyScript(layout: RemoteLayout, lines: number): string {
  return remoteScript(layout, `
[ -f "$deploy/deploys.log" ] && tail -n ${lines} "$deploy/deploys.log" || true
`);
}

/** Prints the current release's record. */
export function releaseRecordScript(layout: RemoteLayout, id: string): string {
  return remoteScript(layout, `
cat "$deploy/releases/${id}/release.json"
`);
}

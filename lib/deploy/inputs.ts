// Every value a deploy sends to the server, checked before anything connects. The remote scripts
// quote whatever they interpolate; this turns a hostile or mistyped value into exit 2 naming its
// flag, before a connection, a lock or a pull.
import { stringValue, UsageError, type Values } from '../core/cli.ts';
import { formats, type Format } from '../env/env-schema.ts';
import type { MigrateSpec, BackupSpec } from './remote-scripts.ts';

export interface DeployInputs {
  /** Flags and their environment twins, after the walkthrough. */
  values: Values;
  /** The compose project name on the server (--project, or the compose directory's name). */
  project: string;
  /** aidd.yml's steps that name services on the server. */
  config: { migrate?: MigrateSpec; backup?: BackupSpec };
  /** The app services whose images the toolkit deploys. */
  services: string[];
  /** What a deploy would send; absent for --rollback, --status, --history and --break-lock. */
  request?: { refs: Record<string, string>; revision?: string; appRevision?: string };
}

function check(label: string, value: string | undefined, format: Format): void {
  if (value === undefined) return;
  const problem = format.check(value, 'ci');
  // JSON.stringify keeps a hostile value on one line and shows where it ends.
  if (problem) throw new UsageError(`${label} ${JSON.stringify(value)} is ${problem}`);
}

export function checkDeployInputs({ values, project, config, services, request }: DeployInputs): void {
  check('--host', stringValue(values, 'host'), formats.host);
  check('--user', stringValue(values, 'user'), formats.unixUser);
  check('--path', stringValue(values, 'path'), formats.remotePath);
  check('--project', project, formats.composeProject);
  check('--to', stringValue(values, 'to'), formats.releaseId);
  check('--restore-backup', stringValue(values, 'restore-backup'), formats.backupFile);
  check('--registry', stringValue(values, 'registry'), formats.registryHost);
  check('--owner', stringValue(values, 'owner')?.toLowerCase(), formats.lowercaseOwner);
  check('--tag', stringValue(values, 'tag'), formats.imageTag);
  check('--proxy-image', stringValue(values, 'proxy-image'), formats.imageReference);
  check('aidd.yml backup.service', config.backup?.service, formats.serviceName);
  check('aidd.yml migrate.service', config.migrate?.service, formats.serviceName);
  for (const need of config.migrate?.needs ?? []) check(`a service migrate.service depends on`, need, formats.serviceName);
  if (!request) return;

  const imagesFrom = stringValue(values, 'images-from');
  check(stringValue(values, 'revision') || !imagesFrom ? '--revision' : `the revision in --images-from ${imagesFrom}`, request.revision, formats.revision);
  check(`the commit of the app's repository`, request.appRevision, formats.revision);
  for (const [service, ref] of Object.entries(request.refs)) {
    check(imagesFrom ? `--images-from ${imagesFrom}: the image of ${service}` : `the image of ${service} (--registry, --owner, --tag, aidd.yml image-name)`, ref, formats.imageReference);
  }
  const unpinned = (values.unpinned as string[] | undefined) ?? [];
  for (const service of unpinned) {
    if (!services.includes(service)) throw new UsageError(`--unpinned ${service}: not an app service; the app services are ${services.join(', ')}`);
  }
  const missing = services.filter((service) => !(service in request.refs) && !unpinned.includes(service));
  if (missing.length > 0) {
    throw new UsageError(
      `--images-from ${imagesFrom} has no image for ${missing.join(', ')}; build them too, or pass ${missing.map((service) => `--unpinned ${service}`).join(' ')} to run the image their compose line names, unpinned`,
    );
  }
}

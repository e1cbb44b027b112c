// `aidd deploy --diff` as people read it: per service the image change, the compose file's changes as
// a unified diff, and the .env variables added, removed or changed, by name only.
import type { ReleaseDiff } from './engine.ts';

export function formatDiff(diff: ReleaseDiff): string {
  const lines = [`live release: ${diff.current ?? 'none (this would be the first deploy)'}`, '', 'images:'];
  for (const image of diff.images) {
    if (image.kept) lines.push(`  ${image.service}: unchanged content, container kept (${image.to})`);
    else if (image.from === image.to) lines.push(`  ${image.service}: same image ${image.to}`);
    else lines.push(`  ${image.service}: ${image.from ?? '(none)'} -> ${image.to}`);
  }
  lines.push('', composeLines(diff), '');
  const { added, removed, changed } = diff.env;
  if (added.length + removed.length + changed.length === 0) lines.push('.env: unchanged (values are never shown)');
  else {
    lines.push('.env (names only):');
    if (added.length) lines.push(`  added: ${added.join(', ')}`);
    if (removed.length) lines.push(`  removed: ${removed.join(', ')}`);
    if (changed.length) lines.push(`  changed: ${changed.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The compose file's changes; on a first deploy the whole file is new, and only its size is worth a line. */
function composeLines(diff: ReleaseDiff): string {
  if (!diff.compose) return 'compose file: unchanged';
  if (!diff.current) {
    const added = diff.compose.split('\n').filter((line) => line.startsWith('+') && !line.startsWith('+++')).length;
    return `compose file: new, ${added} lines (the release's docker-compose.yml, images pinned by digest)`;
  }
  return `compose file:\n${diff.compose.trimEnd()}`;
}

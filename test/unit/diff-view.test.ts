import { describe, expect, it } from 'vitest';
import { formatDiff } from '../../lib/deploy/diff-view.ts';

describe('formatDiff', () => {
  it('shows image changes per service, the compose diff and the .env names', () => {
    const text = formatDiff({
      current: 'r2',
      images: [
        { service: 'api', from: 'reg/api@sha256:aa', to: 'reg/api@sha256:bb', kept: false },
        { service: 'bot', from: 'reg/bot@sha256:cc', to: 'reg/bot@sha256:cc', kept: true },
        { service: 'web', to: 'reg/web@sha256:dd', kept: false },
      ],
      compose: '--- live release\n+++ this deploy\n@@ -1 +1 @@\n-    image: reg/api@sha256:aa\n+    image: reg/api@sha256:bb\n',
      env: { added: ['NEW_KEY'], removed: [], changed: ['POSTGRES_PASSWORD'] },
    });
    expect(text).toBe(
      [
        'live release: r2',
        '',
        'images:',
        '  api: reg/api@sha256:aa -> reg/api@sha256:bb',
        '  bot: unchanged content, container kept (reg/bot@sha256:cc)',
        '  web: (none) -> reg/web@sha256:dd',
        '',
        'compose file:',
        '--- live release',
        '+++ this deploy',
        '@@ -1 +1 @@',
        '-    image: reg/api@sha256:aa',
        '+    image: reg/api@sha256:bb',
        '',
        '.env (names only):',
        '  added: NEW_KEY',
        '  changed: POSTGRES_PASSWORD',
        '',
      ].join('\n'),
    );
  });

  it('on a first deploy gives only the size of the compose file, all of which is new', () => {
    const compose = '--- live release\n+++ this deploy\n@@ -0,0 +1,3 @@\n+services:\n+  web:\n+    image: reg/web@sha256:dd\n';
    const text = formatDiff({ images: [{ service: 'web', to: 'reg/web@sha256:dd', kept: false }], compose, env: { added: ['GREETING'], removed: [], changed: [] } });
    expect(text.split('\n')).toContain("compose file: new, 3 lines (the release's docker-compose.yml, images pinned by digest)");
    expect(text).not.toContain('+services:');
  });

  it('says when nothing would change, and when there is no live release yet', () => {
    expect(formatDiff({ images: [], compose: '', env: { added: [], removed: [], changed: [] } })).toBe(
      'live release: none (this would be the first deploy)\n\nimages:\n\ncompose file: unchanged\n\n.env: unchanged (values are never shown)\n',
    );
  });
});

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { NextConfig } from 'next';

const root = import.meta.dirname;

/**
 * The build id names a build in its asset paths. Next.js draws a random one by default; this one comes from
 * the sources, so building the same commit twice gives the same image, which a deploy then leaves running.
 */
function sourcesBuildId(): string {
  const hash = createHash('sha256');
  for (const top of ['app', 'lib', 'public', 'package-lock.json', 'next.config.ts', 'tsconfig.json']) {
    const entries = statSync(path.join(root, top)).isDirectory()
      ? readdirSync(path.join(root, top), { recursive: true, encoding: 'utf8' }).map((entry) => path.join(top, entry))
      : [top];
    for (const file of entries.sort()) {
      if (statSync(path.join(root, file)).isFile()) hash.update(`${file}\0`).update(readFileSync(path.join(root, file))).update('\0');
    }
  }
  return hash.digest('hex').slice(0, 20);
}

const config: NextConfig = {
  // .next/standalone: server.js with only the node_modules it needs, the layout the Dockerfile copies.
  output: 'standalone',
  // This folder is the app's root, even inside a repository with lockfiles of its own further up.
  outputFileTracingRoot: root,
  turbopack: { root },
  generateBuildId: sourcesBuildId,
  poweredByHeader: false,
};

export default config;

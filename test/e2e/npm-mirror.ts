// A package registry on 127.0.0.1 for builds inside containers, which cannot reach the npm registry here:
// it serves the tarballs a lockfile names from this machine's npm cache (filled by the host's own npm ci),
// read with npm's own cache library. npm ci checks every tarball against the lockfile's integrity.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { npmPackageDir } from '../../lib/build/base-images.ts';
import type { Runner } from '../../lib/core/exec.ts';

const UPSTREAM = 'https://registry.npmjs.org';

interface CacheLibrary {
  get(cache: string, key: string): Promise<{ data: Buffer }>;
}

export interface NpmMirror {
  url: string;
  served: string[];
  missing: string[];
  close(): Promise<void>;
}

export async function startNpmMirror(runner: Runner): Promise<NpmMirror> {
  const npm = npmPackageDir();
  if (!npm) throw new Error('no npm on PATH: the mirror reads its cache with npm\'s own library');
  const cacache = (await import(path.join(npm.dir, 'node_modules', 'cacache', 'lib', 'index.js'))) as CacheLibrary & { default?: CacheLibrary };
  const library = cacache.default ?? cacache;
  const cache = path.join((await runner.run({ argv: ['npm', 'config', 'get', 'cache'], readOnly: true, timeoutMs: 30_000 })).stdout.trim(), '_cacache');
  const served: string[] = [];
  const missing: string[] = [];
  const server = http.createServer((request, response) => {
    const pathname = new URL(request.url ?? '/', 'http://mirror').pathname;
    library.get(cache, `make-fetch-happen:request-cache:${UPSTREAM}${pathname}`).then(
      ({ data }) => {
        served.push(pathname);
        response.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }).end(data);
      },
      () => {
        missing.push(pathname);
        response.writeHead(404).end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, served, missing, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

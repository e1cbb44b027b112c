// Where the toolkit keeps what it builds once per machine (offline base images' work folders, host-build
// stamps): AIDD_CACHE_DIR, else ~/.cache/aidd-devops.
import os from 'node:os';
import path from 'node:path';

export function cacheDir(): string {
  return process.env.AIDD_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'aidd-devops');
}

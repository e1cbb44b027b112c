#!/usr/bin/env node
// The `aidd` command: plain JavaScript, so that it starts on any Node.js and says in one line when that
// Node.js is too old (scripts/aidd.ts does), instead of failing on TypeScript syntax.
import module from 'node:module';
import os from 'node:os';
import path from 'node:path';

// Compiled code is cached in the user's own cache directory: the next start skips most of the parsing.
module.enableCompileCache?.(path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'aidd-devops', 'node-compile-cache'));
// Node.js strips TypeScript types itself (22.18+), except in node_modules: an installed copy, or an
// older Node.js, loads through tsx.
if (!process.features.typescript || import.meta.url.includes('/node_modules/')) (await import('tsx/esm/api')).register();
await import('../scripts/aidd.ts');

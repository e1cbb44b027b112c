import type { NextConfig } from 'next';

const config: NextConfig = {
  // .next/standalone: server.js with only the node_modules it needs, the layout the Dockerfile copies.
  output: 'standalone',
  // This folder is the app's root, even inside a repository with lockfiles of its own further up.
  outputFileTracingRoot: import.meta.dirname,
  turbopack: { root: import.meta.dirname },
  poweredByHeader: false,
};

export default config;

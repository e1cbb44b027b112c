// The reference stack's images the deploy benchmarks deploy, pushed to a throwaway registry: build-push
// once, then three tags per service made from that build. bench-v1 and bench-v2 differ in an ENV line (a
// new build of every service: each container runs something else); bench-v3 changes only the frontend
// (the others get a LABEL, which describes an image without changing what it runs).
import { ToolError } from '../lib/core/cli.ts';
import type { Runner } from '../lib/core/exec.ts';
import type { Registry } from '../lib/sandbox/sandbox.ts';
import { scriptArgv } from '../lib/app/target.ts';

/** Builds and pushes the reference images as REGISTRY/OWNER/aidd-SERVICE:bench-v1..3; `env` holds the registry login and DOCKER_CONFIG. */
export async function pushBenchImages(runner: Runner, registry: Registry, owner: string, env: Record<string, string>, context: string): Promise<void> {
  const built = await runner.attempt({ argv: scriptArgv('build-push', ['--registry', registry.address, '--owner', owner, '--json']), env, timeoutMs: 1_800_000 });
  if (built.exitCode !== 0) throw new ToolError(`build-push failed: ${built.stderr.trim().split('\n').at(-1)}`);
  for (const image of (JSON.parse(built.stdout) as { images: { service: string; repository: string; ref: string }[] }).images) {
    const variants: [string, string][] = [
      ['bench-v1', `FROM ${image.ref}\nENV AIDD_BENCH=v1\n`],
      ['bench-v2', `FROM ${image.ref}\nENV AIDD_BENCH=v2\n`],
      ['bench-v3', `FROM ${image.repository}:bench-v2\n${image.service === 'frontend' ? 'ENV AIDD_BENCH_FRONTEND=v3' : 'LABEL bench=v3'}\n`],
    ];
    for (const [tag, dockerfile] of variants) {
      await runner.run({ argv: ['docker', 'build', '--quiet', '--tag', `${image.repository}:${tag}`, '--file', '-', context], input: dockerfile, env, timeoutMs: 300_000 });
      await runner.run({ argv: ['docker', 'push', '--quiet', `${image.repository}:${tag}`], env, timeoutMs: 300_000 });
    }
  }
}

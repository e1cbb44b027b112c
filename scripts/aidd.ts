// aidd: one command for everyday work. Each subcommand runs one of the scripts in this process, with
// its mode flag (lib/core/subcommands.ts): the same code as `npx tsx scripts/ssh-deploy.ts --status`.
import { fileURLToPath } from 'node:url';
import { EXIT, requireNode, SUBCOMMAND_USAGE_VARIABLE, TOOLKIT_VERSION, ToolError, UsageError } from '../lib/core/cli.ts';
import { aiddHelp, SUBCOMMANDS, subcommandUsage } from '../lib/core/subcommands.ts';

const [name, ...rest] = process.argv.slice(2);
try {
  requireNode(process.versions.node);
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    process.stdout.write(aiddHelp());
  } else if (name === '--version' || name === 'version') {
    process.stdout.write(`${TOOLKIT_VERSION}\n`);
  } else {
    const subcommand = SUBCOMMANDS[name];
    if (!subcommand) throw new UsageError(`unknown command ${JSON.stringify(name)}; the commands are ${Object.keys(SUBCOMMANDS).join(', ')} (aidd --help)`);
    const script = fileURLToPath(new URL(`./${subcommand.script}.ts`, import.meta.url));
    // The script reads its flags from process.argv, as when it is run on its own, and its --help
    // shows how it was invoked.
    process.argv = [process.argv[0]!, script, ...subcommand.argv(rest)];
    process.env[SUBCOMMAND_USAGE_VARIABLE] = subcommandUsage(name);
    await import(script);
  }
} catch (error) {
  process.stderr.write(`aidd: error: ${(error as Error).message}\n`);
  process.exitCode = error instanceof ToolError ? error.exitCode : EXIT.failed;
}

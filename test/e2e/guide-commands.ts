// The ```sh blocks of a guide with where each runs, and the guide's example values replaced the way its
// reader replaces them. The line before each block says where it runs:
//   <!-- guide-test: laptop -->          on the reader's laptop, in one terminal, in the repository root
//   <!-- guide-test: server -->          on the server, as the administrator (root: `sudo ` left out)
//   <!-- guide-test: skip: REASON -->    not run, for the reason given

export type Where = 'laptop' | 'server' | 'skip';

export interface GuideBlock {
  /** 1-based line of the opening fence. */
  line: number;
  where: Where;
  /** Why a skipped block is not run. */
  reason?: string;
  /** The commands, without the list item's indentation. */
  text: string;
}

const MARKER = /^<!-- guide-test: (laptop|server|skip: (\S.*\S)) -->$/;

/** Every ```sh block of `markdown`, and a line naming each block without a valid marker. */
export function guideBlocks(markdown: string): { blocks: GuideBlock[]; problems: string[] } {
  const lines = markdown.split('\n');
  const blocks: GuideBlock[] = [];
  const problems: string[] = [];
  for (let index = 0; index < lines.length; index += 1) {
    const fence = /^(\s*)```(\S*)\s*$/.exec(lines[index]!);
    if (!fence) continue;
    const [, indent, language] = fence;
    const end = lines.findIndex((line, at) => at > index && line.trim() === '```');
    if (end < 0) {
      problems.push(`line ${index + 1}: the code block never closes`);
      break;
    }
    if (language === 'sh') {
      const marker = MARKER.exec(lines[index - 1]?.trim() ?? '');
      const text = lines
        .slice(index + 1, end)
        .map((line) => (line.startsWith(indent!) ? line.slice(indent!.length) : line))
        .join('\n');
      if (!marker) problems.push(`line ${index + 1}: a sh block without a <!-- guide-test: laptop|server|skip: REASON --> line before it`);
      else if (marker[2]) blocks.push({ line: index + 1, where: 'skip', reason: marker[2], text });
      else blocks.push({ line: index + 1, where: marker[1] as Where, text });
    }
    index = end;
  }
  return { blocks, problems };
}

/** What the reader has in place of the guide's example values. */
export interface ReaderValues {
  /** For 203.0.113.10. */
  host: string;
  /** For the deploy user `deploy`. */
  user: string;
  /** For the deploy directory /opt/aidd. */
  deployPath: string;
  /** For your-github-user as the owner of the images (a user, or an organization). */
  owner: string;
  /** For your-github-user as the login to the registry (REGISTRY_USER, docker login -u). */
  registryUser: string;
  /** For ghcr.io. */
  registry: string;
  /** For the compose project aidd-bot (not the folder examples/aidd-bot). */
  project: string;
  /** Only Compose v1: `docker-compose` where the guide says `docker compose`, as it tells Debian's users. */
  composeV1: boolean;
}

/** The guide's example values, which no command that runs may still hold (comments keep the guide's words). */
export const EXAMPLE_VALUES = /203\.0\.113\.10|your-github-user|\bghcr\.io\b|\/opt\/aidd(?![\w-])|\bdeploy@/;

/** `change` applied to the commands of each line, not to its comment (from a # at a word's start on). */
export function inCommands(text: string, change: (commands: string) => string): string {
  return text
    .split('\n')
    .map((line) => {
      const comment = /(^|\s)#/.exec(line);
      const at = comment ? comment.index + comment[1]!.length : line.length;
      return change(line.slice(0, at)) + line.slice(at);
    })
    .join('\n');
}

/**
 * `text` with the example values replaced in its commands. The word deploy is the user only where it
 * stands alone: not in the subcommand `aidd -- deploy`, nor in ssh-deploy, aidd_deploy, aidd-deploy or
 * deploys.log.
 */
export function asTheReaderTypesIt(text: string, where: Where, values: ReaderValues): string {
  return inCommands(text, (commands) => {
    let result = commands
      .replaceAll('203.0.113.10', values.host)
      .replace(/(REGISTRY_USER=|-u )your-github-user\b/g, `$1${values.registryUser}`)
      .replaceAll('your-github-user', values.owner)
      .replace(/\bghcr\.io\b/g, values.registry)
      .replace(/\/opt\/aidd(?![\w-])/g, values.deployPath)
      .replace(/(?<![\w-]|-- )deploy(?![\w-])/g, values.user)
      .replace(/(?<!examples\/)\baidd-bot(?![\w-])/g, values.project);
    if (values.composeV1) result = result.replaceAll('docker compose', 'docker-compose');
    // As root, the guide says to leave sudo out.
    if (where === 'server') result = result.replace(/(^|[|;&(]\s*)sudo /g, '$1');
    return result;
  });
}

/** `text` with `from` replaced by `to`: a change the test makes on purpose, so `from` must occur exactly once. */
export function adapt(text: string, from: string, to: string): string {
  const count = text.split(from).length - 1;
  if (count !== 1) throw new Error(`the guide changed: ${JSON.stringify(from)} occurs ${count} times in the block, not once:\n${text}`);
  return text.replace(from, () => to);
}

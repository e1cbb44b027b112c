// What a script shows GitHub Actions besides its log: an `::error::` annotation for a failure, groups
// around long output, and a Markdown summary appended to the job's page ($GITHUB_STEP_SUMMARY).
// Outside Actions none of it is written. Every text is redacted.
import { appendFileSync } from 'node:fs';
import { redact } from './secrets.ts';

export function inGithubActions(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.GITHUB_ACTIONS === 'true';
}

/** Workflow commands take their data on one line, with %, CR and LF escaped. */
function escapeData(text: string): string {
  return text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** `::error title=TITLE::MESSAGE`: shown on the run's page and the PR's checks. */
export function errorAnnotation(title: string, message: string): string {
  return `::error title=${escapeData(title).replace(/:/g, '%3A').replace(/,/g, '%2C')}::${escapeData(redact(message))}`;
}

export function groupStart(title: string): string {
  return `::group::${escapeData(redact(title))}`;
}

export const GROUP_END = '::endgroup::';

/** Appends Markdown to the job summary, when the job has one. */
export function appendStepSummary(markdown: string, env: NodeJS.ProcessEnv = process.env): void {
  if (env.GITHUB_STEP_SUMMARY) appendFileSync(env.GITHUB_STEP_SUMMARY, `${redact(markdown).trimEnd()}\n\n`);
}

/** A Markdown table; `|` and newlines in cells are escaped so a value never breaks a row. */
export function markdownTable(header: string[], rows: string[][]): string {
  const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  return [header, header.map(() => '---'), ...rows].map((row) => `| ${row.map(cell).join(' | ')} |`).join('\n');
}

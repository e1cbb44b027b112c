// Tells people how a deploy ended: a Telegram message and/or a JSON webhook (Slack, Mattermost and
// most chat tools accept {"text": ...}). Configured only through the environment, so tokens never
// reach a command line; a failed notification is a warning, never a failed deploy.
import type { Logger } from '../core/log.ts';
import { redact, Secret } from '../core/secrets.ts';

export interface NotifyTargets {
  telegram?: { token: Secret; chatId: string; apiBase: string };
  webhook?: { url: Secret };
}

export const NOTIFY_VARIABLES = ['NOTIFY_TELEGRAM_TOKEN', 'NOTIFY_TELEGRAM_CHAT_ID', 'NOTIFY_TELEGRAM_API', 'NOTIFY_WEBHOOK_URL'] as const;

export function notifyTargetsFromEnv(env: NodeJS.ProcessEnv): NotifyTargets {
  const targets: NotifyTargets = {};
  if (env.NOTIFY_TELEGRAM_TOKEN && env.NOTIFY_TELEGRAM_CHAT_ID) {
    targets.telegram = {
      token: new Secret(env.NOTIFY_TELEGRAM_TOKEN),
      chatId: env.NOTIFY_TELEGRAM_CHAT_ID,
      apiBase: (env.NOTIFY_TELEGRAM_API ?? 'https://api.telegram.org').replace(/\/+$/, ''),
    };
  }
  // A webhook URL usually embeds its own secret (Slack's does), so it is treated as one.
  if (env.NOTIFY_WEBHOOK_URL) targets.webhook = { url: new Secret(env.NOTIFY_WEBHOOK_URL) };
  return targets;
}

async function post(url: string, body: unknown): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
}

export async function sendNotifications(targets: NotifyTargets, text: string, logger: Logger): Promise<void> {
  const sends: [string, Promise<void>][] = [];
  if (targets.telegram) {
    const { token, chatId, apiBase } = targets.telegram;
    sends.push(['Telegram', post(`${apiBase}/bot${token.reveal()}/sendMessage`, { chat_id: chatId, text, disable_web_page_preview: true })]);
  }
  if (targets.webhook) sends.push(['webhook', post(targets.webhook.url.reveal(), { text })]);
  for (const [name, sent] of sends) {
    try {
      await sent;
      logger.info(`notified ${name}`);
    } catch (error) {
      logger.warn(redact(`could not notify ${name}: ${(error as Error).message}`));
    }
  }
}

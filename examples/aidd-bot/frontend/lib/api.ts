// The statistics api, read on the server at request time: API_URL comes from the container's
// environment when the page is rendered, never from the build.
const TIMEOUT_MS = 3000; // a stuck api must not hang the page
const ATTEMPTS = 3;

// During a zero-downtime switch the name "api" resolves to the old and the new container, and the old one
// stops: a request refused or cut before any answer is sent again (GET is safe to repeat).
const RETRIED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

export interface Stats {
  users: number;
  messages: number;
  messages_24h: number;
  bot_handled: number;
  bot_last_seen: string | null;
}

export interface Health {
  status: string;
  database: string;
  migration: string | null;
}

export function apiUrl(): string {
  return (process.env.API_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
}

async function getJson<T>(path: string): Promise<T> {
  const url = `${apiUrl()}${path}`;
  for (let attempt = 1; ; attempt += 1) {
    let response: Response;
    try {
      response = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (error) {
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (attempt < ATTEMPTS && code && RETRIED.has(code)) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      throw new Error(describeFailure(url, error));
    }
    if (!response.ok) throw new Error(`GET ${url} answered HTTP ${response.status}`);
    return (await response.json()) as T;
  }
}

function describeFailure(url: string, error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return `GET ${url}: no answer within ${TIMEOUT_MS} ms`;
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return `GET ${url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`;
}

export type Dashboard = { ok: true; stats: Stats; health: Health } | { ok: false; reason: string };

/** The numbers the page shows, or why there are none; never throws, so the page always renders. */
export async function loadDashboard(): Promise<Dashboard> {
  try {
    const [stats, health] = await Promise.all([getJson<Stats>('/stats'), getJson<Health>('/health')]);
    return { ok: true, stats, health };
  } catch (error) {
    const reason = (error as Error).message;
    console.error(`frontend: ${reason}`);
    return { ok: false, reason };
  }
}

import { loadDashboard } from '../lib/api';

// Rendered on every request: the numbers are live and API_URL is read at run time.
export const dynamic = 'force-dynamic';

export default async function StatisticsPage() {
  const dashboard = await loadDashboard();
  if (!dashboard.ok) {
    return (
      <p className="error" role="alert" data-testid="api-error">
        The statistics API is not available right now ({dashboard.reason}). Reload the page in a moment.
      </p>
    );
  }
  const { stats, health } = dashboard;
  const rows: [string, string, string | number][] = [
    ['users', 'Users', stats.users],
    ['messages', 'Messages', stats.messages],
    ['messages-24h', 'Messages (last 24 h)', stats.messages_24h],
    ['bot-handled', 'Messages handled by the bot', stats.bot_handled],
    ['bot-last-seen', 'Bot last seen', stats.bot_last_seen ?? 'never'],
    ['migration', 'Last migration', health.migration ?? 'none'],
  ];
  return (
    <table id="stats">
      <tbody>
        {rows.map(([id, label, value]) => (
          <tr key={id}>
            <th>{label}</th>
            <td data-testid={id}>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

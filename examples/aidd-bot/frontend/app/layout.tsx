import type { Metadata } from 'next';
import type { ReactNode } from 'react';

export const metadata: Metadata = { title: 'AIDD Bot', description: 'Statistics of the AIDD Telegram bot' };

const style = `
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  table { border-collapse: collapse; }
  td, th { padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
  td { font-variant-numeric: tabular-nums; }
  .error { color: #a00; border: 1px solid #e8b4b4; background: #fdf3f3; padding: .6rem .8rem; border-radius: 4px; }
`;

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <head>
        <style>{style}</style>
      </head>
      <body>
        <h1>AIDD Bot</h1>
        {children}
      </body>
    </html>
  );
}

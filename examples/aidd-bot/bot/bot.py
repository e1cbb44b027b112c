"""AIDD Bot worker.

BOT_MODE=polling: long-polls Telegram's getUpdates, stores each message (tg_users, messages) and replies.
BOT_MODE=offline: no network at all, only heartbeats (for machines without Telegram access).
In both modes the main thread upserts a bot_heartbeats row every BOT_HEARTBEAT_SECONDS and touches
/tmp/bot-heartbeat after each successful database write (healthcheck.py checks its age).
The database connection comes from the libpq variables PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE.
"""
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import psycopg2

HEARTBEAT_FILE = "/tmp/bot-heartbeat"
TOKEN_RE = re.compile(r"\d{5,12}:[A-Za-z0-9_-]{30,}")
POLL_SECONDS = 25  # how long Telegram holds a getUpdates long poll open
MAX_BACKOFF = 30
REQUIRED_TABLES = ("tg_users", "messages", "bot_heartbeats")

stop = threading.Event()


def log(msg: str) -> None:
    print(f"bot: {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"bot: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_config() -> SimpleNamespace:
    mode = (os.environ.get("BOT_MODE") or "polling").strip().lower()
    if mode not in ("polling", "offline"):
        fail(f'BOT_MODE must be "polling" or "offline", got "{mode}"')
    try:
        interval = float(os.environ.get("BOT_HEARTBEAT_SECONDS") or "10")
        if interval <= 0:
            raise ValueError
    except ValueError:
        fail("BOT_HEARTBEAT_SECONDS must be a positive number of seconds")
    token = (os.environ.get("BOT_TOKEN") or "").strip()
    if mode == "polling":
        # Checked up front so a bad .env fails loudly at start, not as endless 404s. Never print the token.
        if not token:
            fail("BOT_TOKEN is not set: get one from @BotFather (or set BOT_MODE=offline)")
        if not TOKEN_RE.fullmatch(token):
            fail('BOT_TOKEN is malformed: expected "<digits>:<35 characters>" as issued by @BotFather '
                 "(or set BOT_MODE=offline)")
    api_base = (os.environ.get("TELEGRAM_API_BASE") or "https://api.telegram.org").strip().rstrip("/")
    return SimpleNamespace(mode=mode, interval=interval, token=token, api_base=api_base,
                           instance=socket.gethostname())


# ---------------------------------------------------------------- database

def connect():
    # No DSN: libpq reads the PG* environment. Short timeout so shutdown and retries stay prompt.
    return psycopg2.connect(connect_timeout=5, application_name="aidd-bot")


def touch_heartbeat() -> None:
    with open(HEARTBEAT_FILE, "a"):
        pass
    os.utime(HEARTBEAT_FILE)


class Db:
    """One connection per thread; reconnects on the next call after any error."""

    def __init__(self, conn=None):
        self.conn = conn

    def run(self, fn):
        """Run fn(cursor) in one transaction, then mark the bot as alive."""
        if self.conn is None or self.conn.closed:
            self.conn = connect()
        try:
            with self.conn.cursor() as cur:
                result = fn(cur)
            self.conn.commit()
        except psycopg2.Error:
            # Drop the connection (the server rolls back); an explicit rollback on a dead
            # connection would only replace the real error with "connection already closed".
            self.close()
            raise
        touch_heartbeat()
        return result

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
            self.conn = None


def wait_for_schema():
    """Block until the database answers and the api's migrations have created our tables."""
    delay = 1
    while not stop.is_set():
        try:
            conn = connect()
            with conn, conn.cursor() as cur:
                cur.execute("SELECT " + " AND ".join(["to_regclass(%s) IS NOT NULL"] * len(REQUIRED_TABLES)),
                            REQUIRED_TABLES)
                ready = cur.fetchone()[0]
            if ready:
                log("database and schema ready")
                return conn
            conn.close()
            log(f"waiting for schema: tables not created yet (the api runs the migrations); retry in {delay}s")
        except psycopg2.Error as exc:
            log(f"waiting for database: {first_line(exc)}; retry in {delay}s")
        stop.wait(delay)
        delay = min(delay * 2, MAX_BACKOFF)
    return None


START_SQL = """INSERT INTO bot_heartbeats (instance) VALUES (%s)
ON CONFLICT (instance) DO UPDATE SET started_at = now(), last_seen_at = now()"""
BEAT_SQL = """INSERT INTO bot_heartbeats (instance) VALUES (%s)
ON CONFLICT (instance) DO UPDATE SET last_seen_at = now()"""


def heartbeat_loop(db: Db, cfg) -> None:
    sql = START_SQL
    failing = False
    while not stop.is_set():
        try:
            db.run(lambda cur: cur.execute(sql, (cfg.instance,)))
            sql = BEAT_SQL
            if failing:
                log("heartbeat: database reachable again")
            failing = False
        except psycopg2.Error as exc:
            # The healthcheck turns unhealthy if this keeps failing; the loop itself never dies.
            log(f"heartbeat failed: {first_line(exc)}")
            failing = True
        stop.wait(cfg.interval)


def record_message(cur, instance: str, sender: dict, message: dict) -> int:
    cur.execute("""INSERT INTO tg_users (id, username) VALUES (%s, %s)
                   ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username""",
                (sender["id"], sender.get("username")))
    # Telegram's own timestamp, so messages queued while the bot was down keep their real time.
    cur.execute("""INSERT INTO messages (user_id, text, received_at)
                   VALUES (%s, %s, COALESCE(to_timestamp(%s), now())) RETURNING id""",
                (sender["id"], message.get("text"), message.get("date")))
    message_id = cur.fetchone()[0]
    cur.execute("UPDATE bot_heartbeats SET handled = handled + 1, last_seen_at = now() WHERE instance = %s",
                (instance,))
    return message_id


# ---------------------------------------------------------------- telegram

class TelegramError(Exception):
    pass


def telegram(cfg, method: str, params: dict, timeout: float):
    url = f"{cfg.api_base}/bot{cfg.token}/{method}"
    redact = lambda text: text.replace(cfg.token, "<token>") if cfg.token else text  # noqa: E731
    request = urllib.request.Request(url, data=json.dumps(params).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        try:  # Telegram explains errors in the body (401 Unauthorized, 409 Conflict, ...)
            detail = json.load(exc).get("description", "")
        except Exception:
            detail = exc.reason
        # "from None": the chained exception would carry the URL, which contains the token.
        raise TelegramError(redact(f"{method}: HTTP {exc.code} {detail}")) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TelegramError(redact(f"{method}: {type(exc).__name__}: {reason}")) from None
    if not isinstance(body, dict) or not body.get("ok"):
        raise TelegramError(redact(f"{method}: {body.get('description', 'not ok') if isinstance(body, dict) else body}"))
    return body.get("result")


def poll_loop(cfg) -> None:
    db = Db()
    offset = None
    delay = 1
    while not stop.is_set():
        try:
            params = {"timeout": POLL_SECONDS, "allowed_updates": ["message"]}
            if offset is not None:
                params["offset"] = offset  # confirms every update before it
            updates = telegram(cfg, "getUpdates", params, timeout=POLL_SECONDS + 10)
            for update in updates:
                message = update.get("message") or {}
                sender = message.get("from")
                if sender:
                    # If this raises, offset stays put and Telegram redelivers the update.
                    number = db.run(lambda cur: record_message(cur, cfg.instance, sender, message))
                    log(f"recorded message {number} from user {sender['id']}")
                    try:
                        telegram(cfg, "sendMessage", {"chat_id": message["chat"]["id"],
                                                      "text": f"AIDD Bot: recorded your message (#{number})."},
                                 timeout=15)
                    except TelegramError as exc:
                        log(f"reply failed: {exc}")
                offset = update["update_id"] + 1
            delay = 1
        except TelegramError as exc:
            log(f"telegram unreachable: {exc}; retry in {delay}s")
        except psycopg2.Error as exc:
            log(f"could not record message: {first_line(exc)}; retry in {delay}s")
        except Exception as exc:  # never let the polling thread die silently
            text = f"{type(exc).__name__}: {first_line(exc)}"
            log(f"unexpected error while polling: {text.replace(cfg.token, '<token>')}; retry in {delay}s")
        else:
            continue
        stop.wait(delay)
        delay = min(delay * 2, MAX_BACKOFF)


# ---------------------------------------------------------------- main

def main() -> int:
    cfg = load_config()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    # A restarted container keeps /tmp: drop the old heartbeat so health reflects this process.
    try:
        os.remove(HEARTBEAT_FILE)
    except FileNotFoundError:
        pass
    log(f"starting: mode={cfg.mode}, instance={cfg.instance}, heartbeat every {cfg.interval:g}s")

    conn = wait_for_schema()
    if conn is not None:
        if cfg.mode == "polling":
            log(f"polling {cfg.api_base} for updates")
            # Daemon thread: a long poll in flight must not delay shutdown.
            threading.Thread(target=poll_loop, args=(cfg,), name="poll", daemon=True).start()
        else:
            log("offline mode: no Telegram traffic, heartbeats only")
        db = Db(conn)
        heartbeat_loop(db, cfg)
        db.close()
    log("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())

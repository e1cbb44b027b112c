"""Container healthcheck: healthy only if the bot wrote to the database recently.

bot.py touches the heartbeat file after every successful database write.
"""
import os
import sys
import time

HEARTBEAT_FILE = "/tmp/bot-heartbeat"

try:
    interval = float(os.environ.get("BOT_HEARTBEAT_SECONDS", "10"))
    age = time.time() - os.stat(HEARTBEAT_FILE).st_mtime
except (OSError, ValueError) as exc:
    print(f"unhealthy: {exc}")
    sys.exit(1)

if age > 3 * interval:
    print(f"unhealthy: last database write {age:.0f}s ago (limit {3 * interval:.0f}s)")
    sys.exit(1)
print(f"healthy: last database write {age:.0f}s ago")

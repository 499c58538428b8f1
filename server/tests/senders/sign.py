"""Signs a delivery as its sender's own library does, for the trigger tests.

    sign.py standard-webhooks <secret> <id> <unix-seconds>   (the body on stdin)

prints the signature header's value.
"""
import sys
from datetime import datetime, timezone


def main() -> None:
    scheme, *args = sys.argv[1:]
    body = sys.stdin.buffer.read().decode()
    if scheme == "standard-webhooks":
        from standardwebhooks.webhooks import Webhook

        secret, msg_id, seconds = args
        at = datetime.fromtimestamp(int(seconds), tz=timezone.utc)
        print(Webhook(secret).sign(msg_id, at, body))
    else:
        sys.exit(f"unknown scheme {scheme}")


main()

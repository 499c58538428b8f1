"""Signs a delivery as its sender's own library does, for the trigger tests.

    sign.py standard-webhooks <secret> <id> <unix-seconds>   (the body on stdin)
    sign.py twilio <auth-token> <url>        (the URL-encoded form on stdin)
    sign.py mailgun <signing-key> <unix-seconds> <token>
    sign.py verify-standard-webhooks <secret>   ({"headers", "body"} on stdin)

prints the signature: Standard Webhooks' header value with its own library,
Twilio's X-Twilio-Signature with its library's RequestValidator, Mailgun's
as its documentation computes it (Mailgun ships no library for it). The
last verifies a message Paddock sent (a notification) as a receiver does
with the standardwebhooks library, and prints its payload; it fails if the
signature does not hold.
"""
import json
import hashlib
import hmac
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qsl


def main() -> None:
    scheme, *args = sys.argv[1:]
    body = sys.stdin.buffer.read().decode()
    if scheme == "standard-webhooks":
        from standardwebhooks.webhooks import Webhook

        secret, msg_id, seconds = args
        at = datetime.fromtimestamp(int(seconds), tz=timezone.utc)
        print(Webhook(secret).sign(msg_id, at, body))
    elif scheme == "twilio":
        from twilio.request_validator import RequestValidator

        token, url = args

        class Form(dict):
            """The form with every value of a repeated name, as the
            library reads Django's QueryDict."""

            def getlist(self, name):
                return self[name]

        form = Form()
        for name, value in parse_qsl(body, keep_blank_values=True):
            form.setdefault(name, []).append(value)
        print(RequestValidator(token).compute_signature(url, form))
    elif scheme == "mailgun":
        key, seconds, token = args
        print(
            hmac.new(
                key=key.encode(),
                msg=f"{seconds}{token}".encode(),
                digestmod=hashlib.sha256,
            ).hexdigest()
        )
    elif scheme == "verify-standard-webhooks":
        from standardwebhooks.webhooks import Webhook

        (secret,) = args
        received = json.loads(body)
        print(json.dumps(Webhook(secret).verify(received["body"], received["headers"])))
    else:
        sys.exit(f"unknown scheme {scheme}")


main()

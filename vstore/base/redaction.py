"""Secrets kept out of what is shown: a camera's source URL without its password (in its
user part or its query, where many cameras take one), and messages that quote it."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

# Query parameters that carry a secret in cameras' and streaming servers' URLs.
_SECRET_PARAMS = frozenset(
    ("password", "passwd", "pass", "pwd", "token", "access_token", "auth", "key", "apikey",
     "api_key", "secret", "signature", "sig", "credential", "credentials")
)  # fmt: skip
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password, and the values of query parameters that carry secrets,
    masked."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        port = parts.port
    except ValueError:
        return "(unparsable url)"
    if parts.password is not None:
        host = (parts.hostname or "") + (f":{port}" if port is not None else "")
        parts = parts._replace(netloc=f"{parts.username}:{MASK}@{host}")
    if any(k.lower() in _SECRET_PARAMS for k, _v in query):
        masked = [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in query]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    return urlunsplit(parts)


def redact_secrets(text: str, url: str) -> str:
    """``text`` (an error that may quote ``url``, in any form) with the URL's secrets
    masked wherever they appear."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        password = parts.password
        netloc_password = parts.netloc.rpartition("@")[0].partition(":")[2]
    except ValueError:
        return text
    # Each secret as decoded and as written in the URL (an error quotes it either way).
    raw = [kv.partition("=") for kv in parts.query.split("&")]
    secrets = [v for k, v in query if k.lower() in _SECRET_PARAMS]
    secrets += [v for k, _eq, v in raw if unquote_plus(k).lower() in _SECRET_PARAMS]
    secrets += [p for p in (password, netloc_password) if p]
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) >= 3:  # (a one- or two-letter value would mask unrelated text)
            text = text.replace(s, MASK)
    return text

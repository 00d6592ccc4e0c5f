"""URLs in messages, logs and metadata: never with the credentials they may carry (Redis, MLflow's database)."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def safe_url(url: str) -> str:
    """`url` without the username, password or password= query that it may carry, for messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                           if k.lower() not in ("password", "username")])
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    except ValueError:                  # not parseable: keep only what cannot be a secret
        return url.split("://", 1)[0] + "://(unparseable URL)" if "://" in url else "(unparseable URL)"

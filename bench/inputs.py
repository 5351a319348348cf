"""Benchmark input: Airbyte RECORD lines shaped like the sample Auth0 users, STATE every 10,000."""

from __future__ import annotations

import json
from pathlib import Path

STATE_EVERY = 10_000
USERS = 5_000
"""Identities cycle, so no identity exceeds Heap's per-identity limit in the paced run."""


def record(n: int, users: int | None = USERS) -> dict:
    """Record `n`; its identity cycles over `users`, or is its own when `users` is None."""
    user = n if users is None else n % users
    stamp = f"2022-10-21T{(n // 3600) % 24:02d}:{(n // 60) % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z"
    return {
        "blocked": n % 10 == 0,
        "created_at": stamp,
        "email": f"user{user}@example.com",
        "email_verified": n % 2 == 0,
        "family_name": "Brakus",
        "given_name": "Camden",
        "identities": {
            "user_id": f"0a12757f-4b19-4e93-969e-{n:012d}",
            "connection": "Username-Password-Authentication" if n % 3 else "google-oauth2",
            "provider": "auth0",
            "isSocial": n % 3 == 0,
        },
        "name": "Jordan Yost",
        "nickname": "Elroy",
        "updated_at": stamp,
        "user_id": f"auth0|{n}",
        "logins_count": n % 97,
    }


def write_input(path: Path, count: int, users: int | None = USERS) -> Path:
    """Create (once) a file of `count` records; reused across runs of the same size. `users`
    None gives every record an identity of its own."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        for n in range(1, count + 1):
            message = {
                "type": "RECORD",
                "record": {
                    "stream": "users",
                    "data": record(n, users),
                    "emitted_at": 1666325394000,
                },
            }
            out.write(json.dumps(message, separators=(",", ":")) + "\n")
            if n % STATE_EVERY == 0:
                state = {
                    "type": "STATE",
                    "state": {
                        "type": "STREAM",
                        "stream": {
                            "stream_descriptor": {"name": "users"},
                            "stream_state": {"n": n},
                        },
                    },
                }
                out.write(json.dumps(state, separators=(",", ":")) + "\n")
    partial.rename(path)
    return path

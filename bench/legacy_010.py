"""0.1.0-style sending, for comparison: what the original connector's write loop did.

As 0.1.0 did (the README's "Changes since 0.1.0" and docs/heap-analytics.md describe it):
flatten the whole record, pick the columns, then one `requests.post` per row with no session (a
new connection every time) and no timeout, sequentially. Messages are read with the CDK's parser.
Usage: python bench/legacy_010.py CONFIG_JSON < messages.jsonl
"""

import io
import json
import sys

import pendulum
import requests
from airbyte_cdk.destinations import Destination
from airbyte_cdk.models import Type


def flatten_json(value, prefix="", out=None):
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, child in value.items():
            flatten_json(child, f"{prefix}{key}.", out)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            flatten_json(child, f"{prefix}{index}.", out)
    else:
        out[prefix[:-1]] = value
    return out


def parse_track(flat, api):
    properties = {c: flat[c] for c in api["property_columns"].split(",") if flat.get(c) is not None}
    event = flat.get(api["event_column"])
    identity = flat.get(api["identity_column"])
    timestamp = (
        flat.get(api.get("timestamp_column") or "") or pendulum.now("UTC").to_iso8601_string()
    )
    if event and identity and timestamp:
        return {
            "identity": identity,
            "event": event,
            "timestamp": timestamp,
            "properties": properties,
        }
    return None


def main() -> None:
    config = json.loads(open(sys.argv[1]).read())
    api = config["api"]
    url = f"{config['base_url']}/api/{api['api_type']}"
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    records = loaded = 0
    for message in Destination._parse_input_stream(None, stdin):  # type: ignore[arg-type]
        if message.type != Type.RECORD:
            continue
        records += 1
        payload = parse_track(flatten_json(message.record.data), api)
        if payload is None:
            continue
        response = requests.post(
            url,
            json={"app_id": config["app_id"], **payload},
            headers={"Content_Type": "application/json"},
        )
        response.raise_for_status()
        loaded += 1
    print(f"Total Records: {records}. Total loaded: {loaded}.")


if __name__ == "__main__":
    main()

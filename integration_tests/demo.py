"""`make demo`: spec, check and write for every API type against a local Heap sandbox.

Runs the real CLI (`python main.py …`) on `sample_files/`, with each sample config pointed at the
sandbox, then prints what the sandbox received: first one write per API type (0.1.0's sample
configs), then the three API types loaded by ONE write of a three-stream catalog
(`config-streams.json`), then a sync whose rejected rows go to an S3 bucket (moto's server),
and the objects it wrote; it ends with events by user_id, an identify and a user deletion
(`config-users.json`, with the sandbox's api_key).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from integration_tests.heap_sandbox import HeapSandbox
from integration_tests.s3_server import S3Server

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_files"
CONFIGS = {
    "track": "config-events.json",
    "add_user_properties": "config-aup.json",
    "add_account_properties": "config-aap.json",
}
SHOWN_ITEMS = 2


def main() -> int:
    with HeapSandbox() as sandbox, tempfile.TemporaryDirectory() as scratch:
        print(f"Heap sandbox listening on {sandbox.url}\n")
        spec = cli("spec")
        print(f"$ python main.py spec  -> {summarise(spec)}\n")
        for api_type, name in CONFIGS.items():
            config = json.loads((SAMPLES / name).read_text())
            config["base_url"] = sandbox.url
            config_path = Path(scratch) / name
            config_path.write_text(json.dumps(config))
            banner(f"{api_type}  ({name}, base_url -> sandbox)")
            show("check", cli("check", "--config", str(config_path)))
            messages = (SAMPLES / "messages.jsonl").read_text()
            write = cli(
                "write",
                "--config",
                str(config_path),
                "--catalog",
                str(SAMPLES / "configured_catalog.json"),
                stdin=messages,
            )
            show("write", write)
        received(sandbox, "What the sandbox received")

        sandbox.reset()
        config = json.loads((SAMPLES / "config-streams.json").read_text())
        config["base_url"] = sandbox.url
        config_path = Path(scratch) / "config-streams.json"
        config_path.write_text(json.dumps(config))
        banner("users, accounts and orders in ONE write (config-streams.json)")
        write = cli(
            "write",
            "--config",
            str(config_path),
            "--catalog",
            str(SAMPLES / "configured_catalog-streams.json"),
            stdin=(SAMPLES / "messages-streams.jsonl").read_text(),
        )
        show("write", write)
        received(sandbox, "What the sandbox received from that one write")
        rejected_records_demo(sandbox, Path(scratch))
        user_apis_demo(sandbox, Path(scratch))
    return 0


DEMO_API_KEY = "demo-user-deletion-key"


def user_apis_demo(sandbox: HeapSandbox, scratch: Path) -> None:
    """Events by user_id, identify pairs (one that Heap would ignore) and a user deletion in one
    write; check first obtains a token of the User Deletion API."""
    sandbox.reset()
    config = json.loads((SAMPLES / "config-users.json").read_text())
    sandbox.set_auth(api_keys={config["app_id"]: [DEMO_API_KEY]})
    config.update(base_url=sandbox.url, api_key=DEMO_API_KEY)
    config_path = scratch / "config-users.json"
    config_path.write_text(json.dumps(config))
    banner("events by user_id, identify and user deletion (config-users.json)")
    show("check", cli("check", "--config", str(config_path)))
    catalog = str(SAMPLES / "configured_catalog-users.json")
    messages = (SAMPLES / "messages-users.jsonl").read_text()
    show("write", cli("write", "--config", str(config_path), "--catalog", catalog, stdin=messages))
    banner("What the sandbox received from that write")
    for event in sandbox.accepted("track"):
        print("track:    " + json.dumps({k: v for k, v in event.items() if not k.startswith("_")}))
    for call in sandbox.identify_calls():
        shown = {k: call[k] for k in ("identity", "user_id", "timestamp", "outcome") if k in call}
        print("identify: " + json.dumps(shown))
    for request in sandbox.deletion_requests():
        print(
            f"deletion: {request['deletion_request_id']} (token {request['token_number']}): "
            + json.dumps(request["users"])
        )
    print(f"access tokens issued: {sandbox.counters()['tokens_issued']}\n")


def rejected_records_demo(sandbox: HeapSandbox, scratch: Path) -> None:
    """One sync whose invalid and refused rows go to an S3 bucket (moto's server on 127.0.0.1),
    then the objects in the bucket."""
    sandbox.reset()
    sandbox.set_faults(reject_marker="refuse-me")
    with S3Server() as s3:
        s3.create_bucket("demo-rejects")
        keys = s3.credentials()
        config = json.loads((SAMPLES / "config-events.json").read_text())
        config.update(
            base_url=sandbox.url,
            object_storage_config={
                "storage_type": "S3",
                "s3_bucket_name": "demo-rejects",
                "s3_bucket_region": "us-east-1",
                "bucket_path": "heap",
                "s3_endpoint": s3.url,
                "access_key_id": keys["aws_access_key_id"],
                "secret_access_key": keys["aws_secret_access_key"],
            },
        )
        config_path = scratch / "config-rejects.json"
        config_path.write_text(json.dumps(config))
        lines = (SAMPLES / "messages.jsonl").read_text().splitlines()
        records = [line for line in lines if '"RECORD"' in line][:3]
        bad = [json.loads(line) for line in records[:2]]
        del bad[0]["record"]["data"]["email"]  # invalid: no identity
        bad[1]["record"]["data"]["name"] = "refuse-me"  # refused by the sandbox
        stdin = "\n".join([*map(json.dumps, bad), records[2]]) + "\n"
        banner("rejected records to S3 (object_storage_config, moto's S3 on 127.0.0.1)")
        show("check", cli("check", "--config", str(config_path)))
        catalog = str(SAMPLES / "configured_catalog.json")
        show("write", cli("write", "--config", str(config_path), "--catalog", catalog, stdin=stdin))
        for key, body in s3.objects("demo-rejects").items():
            print(f"s3://demo-rejects/{key}")
            for line in body.decode().splitlines():
                print(f"  {line}")
        print()


def received(sandbox: HeapSandbox, title: str) -> None:
    banner(title)
    for api_type in CONFIGS:
        items = sandbox.accepted(api_type)
        print(f"{api_type}: {len(items)} items accepted; the first {SHOWN_ITEMS}:")
        for item in items[:SHOWN_ITEMS]:
            shown = {k: v for k, v in item.items() if not k.startswith("_")}
            print("  " + json.dumps(shown))
    counters = sandbox.counters()
    print(
        f"\nRequests: {counters['requests']}, items accepted: {counters['items_accepted']}, "
        f"duplicates ignored: {counters['duplicates_ignored']}\n"
    )


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def summarise(run: subprocess.CompletedProcess) -> str:
    kinds = [json.loads(line)["type"] for line in run.stdout.splitlines() if line.startswith("{")]
    return f"exit {run.returncode}, messages: {', '.join(kinds)}"


def show(command: str, run: subprocess.CompletedProcess) -> None:
    print(f"$ python main.py {command} … (exit {run.returncode})")
    for line in run.stdout.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["type"] == "LOG":
            print(f"  LOG   {message['log']['message']}")
        elif message["type"] == "STATE":
            state = message["state"]
            stream = state.get("stream") or {}
            name = stream.get("stream_descriptor", {}).get("name", state.get("type", "legacy"))
            print(
                f"  STATE {name} {json.dumps(stream.get('stream_state', state.get('data')))} "
                f"(records: {state['destinationStats']['recordCount']:.0f})"
            )
        elif message["type"] == "CONNECTION_STATUS":
            print(f"  CONNECTION_STATUS {message['connectionStatus']['status']}")
        else:
            print(f"  {message['type']}")
    if run.returncode != 0:
        print(run.stderr)
    print()


def banner(title: str) -> None:
    print(f"=== {title} " + "=" * max(0, 70 - len(title)))


if __name__ == "__main__":
    sys.exit(main())

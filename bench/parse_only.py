"""The bare CDK parse ceiling: read stdin with the CDK's own message parser and do nothing.

Exactly what `Destination.run` does before `write` sees a message (a UTF-8 TextIOWrapper over
stdin, then `Destination._parse_input_stream`), so its CPU per message is the floor any Python
destination pays.
"""

import io
import sys

from airbyte_cdk.destinations import Destination


def main() -> None:
    stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    count = 0
    for _ in Destination._parse_input_stream(None, stdin):  # type: ignore[arg-type]
        count += 1
    print(f"parsed {count} messages")


if __name__ == "__main__":
    main()

"""`check`: is the config usable and does Heap answer?

As 0.1.0 did, it sends one preflight track event; unlike 0.1.0 it carries a fixed idempotency key,
so however many times a connection is checked, Heap stores at most one such event. Heap accepts an
unknown app_id silently, so a success proves the host and the path, not the app_id.

With an `api_key` (a mapping deletes users), it also obtains an access token of the User
Deletion API, which proves the key and the app_id together, and deletes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from destination_heap_analytics.config.settings import (
    ApiType,
    HeapConfig,
    auth_token_url,
    endpoint_url,
)
from destination_heap_analytics.delivery.retry import (
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
)
from destination_heap_analytics.heap.client import (
    CHECK_RETRY_SECONDS,
    CHECK_TIMEOUTS,
    HeapClient,
    HeapConfigurationError,
    HeapError,
    HeapRejected,
    UserDeletionClient,
)
from destination_heap_analytics.mapping.transformer import now_iso8601
from destination_heap_analytics.sync_clock import Clock, SyncClock

PREFLIGHT_IDENTITY = "admin@heap.io"
PREFLIGHT_EVENT = "Airbyte Preflight Check"
PREFLIGHT_IDEMPOTENCY_KEY = "airbyte-preflight-check"


def preflight_event() -> dict:
    return {
        "identity": PREFLIGHT_IDENTITY,
        "idempotency_key": PREFLIGHT_IDEMPOTENCY_KEY,
        "event": PREFLIGHT_EVENT,
        "timestamp": now_iso8601(),
    }


def briefly_retried(operation: Callable[[], object], config: HeapConfig, clock: Clock) -> None:
    """`operation`, retried through transient failures within a check's short budget."""
    call_with_retries(
        operation, RetryPolicy(min(CHECK_RETRY_SECONDS, config.max_retry_seconds)), clock
    )


def check_connection(config: HeapConfig) -> str | None:
    """None when Heap accepted the preflight event, else a message saying what to fix."""
    url = endpoint_url(config.base_url, ApiType.TRACK)
    client = HeapClient(url, config.app_id, bulk_key=None, pool_size=1, timeout=CHECK_TIMEOUTS)
    try:
        briefly_retried(lambda: client.send([preflight_event()]), config, SyncClock())
    except HeapConfigurationError as error:
        return f"{error}. Check the '{error.field}' setting."
    except HeapRejected as error:
        return f"Heap refused the preflight event sent to {url}: {error}. Check 'app_id'."
    except RetriesExhausted as error:
        return f"Heap at {url} could not be reached: {error}. Check 'base_url'."
    except HeapError as error:
        return f"Heap at {url} could not be reached: {error}."
    finally:
        client.close()
    return None


def check_deletion_key(config: HeapConfig) -> str | None:
    """None when Heap gave an access token for `app_id:api_key` (nothing is deleted), else a
    message saying what to fix; None too when the config has no api_key."""
    if config.api_key is None:
        return None
    url = auth_token_url(config.base_url)
    clock = SyncClock()
    client = UserDeletionClient(
        endpoint_url(config.base_url, ApiType.DELETE_USERS),
        config.app_id,
        config.api_key,
        url,
        clock,
        pool_size=1,
        timeout=CHECK_TIMEOUTS,
    )
    try:
        briefly_retried(client.tokens.current, config, clock)
    except HeapConfigurationError as error:
        return f"{error}. Check the '{error.field}' setting."
    except RetriesExhausted as error:
        return f"Heap's User Deletion API at {url} could not be reached: {error}."
    except HeapError as error:
        return f"Heap's User Deletion API at {url} refused the token request: {error}."
    finally:
        client.close()
    return None

"""Routes: which streams are admitted, one route per stream, shared endpoints per API type
(client, ordering keys), one rejection guard per sync, batch sizes that fit the rate limit, and
the ordering key of each API type."""

from __future__ import annotations

import threading

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalog, ConfiguredAirbyteCatalogSerializer

from destination_heap_analytics.config.settings import ApiType, ConfigError, RateLimit
from destination_heap_analytics.delivery.senders import SenderPool
from destination_heap_analytics.heap.client import HeapRejected, HeapTransientError
from destination_heap_analytics.mapping.activation import CatalogError
from destination_heap_analytics.mapping.identify_rules import SECOND_IDENTITY
from destination_heap_analytics.mapping.transformer import stream_key
from destination_heap_analytics.sync.routes import (
    Ignored,
    Route,
    Routes,
    ToHeap,
    effective_batch_size,
    ordering_key,
)
from unit_tests.builders import heap_config, make_catalog
from unit_tests.fakes import FakeClock

WAIT = 2.0
"""Upper bound for an event the test expects to happen (it normally happens at once)."""


class RecordingClients:
    def __init__(self) -> None:
        self.made: list[tuple[str, str | None]] = []

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_) -> object:
        self.made.append((endpoint_url, bulk_key))
        return self

    def close(self) -> None:
        pass


def make_routes(
    *streams: tuple[str | None, str],
    clients: object | None = None,
    senders: int = 4,
    **config: object,
) -> Routes:
    clock = FakeClock()
    settings = heap_config(**{"batch_size": 10, **config})
    return Routes(
        settings,
        make_catalog(*streams),
        clock,
        SenderPool(senders, clock),
        ToHeap(settings, clock, clients or RecordingClients()),
    )


# --- Routes ----------------------------------------------------------------------------------


def test_each_catalog_stream_gets_its_own_route_built_once():
    routes = make_routes((None, "users"), ("shop", "orders"))

    users = routes.route_for((None, "users"))
    orders = routes.route_for(("shop", "orders"))

    assert users is routes.route_for((None, "users"))
    assert users is not orders and users.batcher is not orders.batcher
    assert routes.built == [users, orders]


def test_streams_outside_the_catalog_get_no_route():
    routes = make_routes((None, "users"))
    assert routes.route_for(None) is Ignored.NOT_IN_CATALOG
    assert routes.built == []


def test_routes_of_one_api_type_share_one_client():
    clients = RecordingClients()
    routes = make_routes((None, "users"), (None, "orders"), clients=clients)
    routes.route_for((None, "users"))
    routes.route_for((None, "orders"))
    assert clients.made == [("https://heap.test/api/track", "events")]


def test_a_route_is_known_once_its_stream_has_had_records():
    routes = make_routes(("shop", "users"), (None, "orders"))
    users = routes.route_for(("shop", "users"))

    assert routes.built_route(("shop", "users")) is users
    assert routes.built_route((None, "orders")) is None
    assert routes.built_route(None) is None


def feed(route: Route, data: dict, row: int) -> None:
    """As the writer hands a record of the route's own stream to it."""
    route.process_record(data, row, stream_key(*route.stats.stream))


class RefusingUsers(RecordingClients):
    """Refuses every post holding an identity that starts with "bad"."""

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[str] = []

    def body(self, items: list[dict]) -> list[dict]:
        return items

    def post(self, items: list[dict]) -> None:
        self.posted += [item["identity"] for item in items]
        if any(item["identity"].startswith("bad") for item in items):
            raise HeapRejected(400, "identity")


def test_every_route_judges_refusals_with_the_syncs_one_guard():
    """Twenty bad rows of thirty stop a stream judged alone; among a hundred good rows of
    another stream they are a few bad rows, skipped."""
    clients = RefusingUsers()
    routes = make_routes(
        (None, "users"), (None, "orders"), clients=clients, senders=1, batch_size=1
    )
    orders, users = routes.route_for((None, "orders")), routes.route_for((None, "users"))
    for row in range(1, 101):
        feed(orders, {"user": f"good-{row}", "event": "e"}, row)
    for row in range(101, 131):
        feed(users, {"user": f"{'bad' if row <= 120 else 'ok'}-{row}", "event": "e"}, row)
    routes._pool.finish()

    assert users.stats.delivery.rejected.total() == 20
    assert users.stats.delivery.delivered + orders.stats.delivery.delivered == 110


USER_PROPERTIES = {
    "api_type": "add_user_properties",
    "identity_column": "user",
    "property_columns": "plan",
}


class UserProperties:
    """Heap's add_user_properties as a client factory: the properties of each identity, later
    writes winning. The first post holding `fail_once` answers 500 (then sets `answered_500`)
    only once a caller is blocked in `pool` (set by the test): the thread submitting a later
    post, held back as it must be. If none is held back within WAIT, a later post has had all
    that time to overtake the failing one (which must not happen)."""

    def __init__(self, fail_once: str | None) -> None:
        self.users: dict[str, dict] = {}
        self.posts: list[list[str]] = []
        self.answered_500 = threading.Event()
        self.pool: SenderPool | None = None
        self._fail_once = fail_once
        self._lock = threading.Lock()

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_) -> object:
        return self

    def body(self, items: list[dict]) -> list[dict]:
        return items

    def post(self, items: list[dict]) -> None:
        plans = [item["properties"]["plan"] for item in items]
        with self._lock:
            self.posts.append(plans)
            failing = self._fail_once in plans
            if failing:
                self._fail_once = None
        if failing:
            self.pool.wait_for_blocked_callers(1, WAIT)
            self.answered_500.set()
            raise HeapTransientError("HTTP 500 from Heap")
        with self._lock:
            for item in items:
                self.users.setdefault(item["identity"], {}).update(item["properties"])

    def close(self) -> None:
        pass


def test_the_later_record_wins_across_streams_even_when_the_earlier_one_is_retried():
    """Issue 14, item 2: stream a's old plan is retried; stream b's new one must land last."""
    heap = UserProperties(fail_once="old")
    routes = make_routes((None, "a"), (None, "b"), clients=heap, api=USER_PROPERTIES, batch_size=1)
    heap.pool = routes._pool
    feed(routes.route_for((None, "a")), {"user": "u", "plan": "old"}, 1)
    feed(routes.route_for((None, "b")), {"user": "u", "plan": "new"}, 2)
    assert heap.answered_500.wait(WAIT)  # before `finish` is blocked in the pool as well
    routes._pool.finish()

    assert heap.posts == [["old"], ["old"], ["new"]]
    assert heap.users == {"u": {"plan": "new"}}


def test_an_earlier_record_in_another_streams_filling_batch_is_sent_first():
    heap = UserProperties(fail_once=None)
    routes = make_routes((None, "a"), (None, "b"), clients=heap, api=USER_PROPERTIES)
    a, b = routes.route_for((None, "a")), routes.route_for((None, "b"))
    feed(a, {"user": "u", "plan": "old"}, 1)
    feed(a, {"user": "v", "plan": "a-only"}, 2)
    feed(b, {"user": "u", "plan": "new"}, 3)
    b.batcher.drain()
    routes._pool.finish()

    assert heap.posts == [["old", "a-only"], ["new"]]
    assert heap.users["u"] == {"plan": "new"}


def test_routes_of_other_api_types_do_not_order_each_other():
    routes = make_routes(
        (None, "users"),
        (None, "events"),
        streams=[{"stream": "users", "api": USER_PROPERTIES}],
    )
    feed(routes.route_for((None, "users")), {"user": "u"}, 1)
    feed(routes.route_for((None, "events")), {"user": "u", "event": "e"}, 2)
    assert routes.route_for((None, "users")).batcher._items, "still filling: not sent first"


# --- batch size and ordering -----------------------------------------------------------------


def test_batch_size_is_the_configured_one_without_a_per_app_limit():
    assert effective_batch_size(250, None) == 250


def test_batch_size_is_capped_by_the_per_app_limit():
    assert effective_batch_size(500, RateLimit(120, 60.0)) == 120


def test_batch_size_is_not_raised_by_a_larger_rate_limit():
    assert effective_batch_size(500, RateLimit(9000, 60.0)) == 500


def test_ordering_key_for_user_properties_is_the_identity():
    key = ordering_key(ApiType.ADD_USER_PROPERTIES)

    assert key is not None
    assert key({"identity": "u-7", "properties": {"plan": "pro"}}) == "u-7"


def test_ordering_key_for_account_properties_is_the_account_id():
    key = ordering_key(ApiType.ADD_ACCOUNT_PROPERTIES)

    assert key is not None
    assert key({"account_id": "acme", "properties": {}}) == "acme"


def test_track_has_no_ordering_key():
    assert ordering_key(ApiType.TRACK) is None


# --- identify and user deletion -------------------------------------------------------------------

DELETE_API = {"api_type": "delete_users", "identity_column": "email"}
IDENTIFY_API = {"api_type": "identify", "identity_column": "email", "user_id_column": "sdk"}


def schema_catalog(name: str, schema: dict, **activation: object) -> ConfiguredAirbyteCatalog:
    stream = {
        "stream": {"name": name, "json_schema": schema, "supported_sync_modes": ["full_refresh"]},
        "sync_mode": "full_refresh",
        "destination_sync_mode": "append",
        **activation,
    }
    return ConfiguredAirbyteCatalogSerializer.load({"streams": [stream]})


def routes_over(catalog: ConfiguredAirbyteCatalog, clients=None, deletions=None, **config):
    clock = FakeClock()
    settings = heap_config(**{"batch_size": 10, **config})
    return Routes(
        settings,
        catalog,
        clock,
        SenderPool(4, clock),
        ToHeap(
            settings,
            clock,
            clients or RecordingClients(),
            deletion_client_factory=deletions or RecordingDeletions(),
        ),
    )


class RecordingDeletions:
    def __init__(self) -> None:
        self.made: list[tuple] = []

    def __call__(self, url, app_id, api_key, auth_url, clock, **options) -> object:
        self.made.append((url, app_id, api_key, auth_url, options))
        return self

    def close(self) -> None:
        pass


EMAIL_SCHEMA = {"type": "object", "properties": {"email": {"type": "string"}}}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},
        {"type": "object", "properties": {"mail": {"type": "string"}}},
        {"type": "object", "properties": {"email": {"type": "object"}}, "required": 3},
    ],
)
def test_a_deletion_by_a_column_the_schema_does_not_declare_is_refused_at_the_start(schema):
    with pytest.raises(CatalogError) as raised:
        routes_over(schema_catalog("gone", schema), api=DELETE_API, api_key="k")
    assert "stream 'gone' deletes users by the column 'email'" in str(raised.value)


def test_a_deletion_stream_gets_the_user_deletion_client_and_requests_of_ten_thousand():
    deletions = RecordingDeletions()
    routes = routes_over(
        schema_catalog("gone", EMAIL_SCHEMA), deletions=deletions, api=DELETE_API, api_key="K1"
    )
    route = routes.route_for((None, "gone"))

    ((url, app_id, api_key, auth_url, options),) = deletions.made
    assert url == "https://heap.test/api/public/v0/user_deletion"
    assert auth_url == "https://heap.test/api/public/v0/auth_token"
    assert (app_id, api_key, options) == ("11", "K1", {"pool_size": 4})
    assert route.batcher._batch_size == 10_000


def test_a_soft_delete_in_the_mapping_screen_needs_the_api_key():
    catalog = schema_catalog(
        "gone",
        EMAIL_SCHEMA | {"properties": {"identity": {"type": "string"}}},
        destination_object_name="user",
        destination_sync_mode="soft_delete",
        primary_key=[["identity"]],
    )
    with pytest.raises(ConfigError) as raised:
        routes_over(catalog)
    assert raised.value.field == "api_key"
    assert routes_over(catalog, api_key="k").streams.mapping((None, "gone")) is not None


def test_identify_sends_one_pair_a_request_and_skips_what_heap_would_ignore():
    clients = RecordingClients()
    routes = routes_over(
        make_catalog("a", "b"),
        clients=clients,
        streams=[{"stream": "a", "api": IDENTIFY_API}, {"stream": "b", "api": IDENTIFY_API}],
    )
    first, second = routes.route_for((None, "a")), routes.route_for((None, "b"))

    assert clients.made == [("https://heap.test/api/v1/identify", None)]
    assert first.batcher._batch_size == 1
    assert feed_reason(first, {"email": "ann", "sdk": 1}, 1) is None
    assert feed_reason(second, {"email": "bob", "sdk": "1"}, 2) == SECOND_IDENTITY  # one sync
    assert feed_reason(second, {"email": "ann", "sdk": 1.0}, 3) is None
    assert second.stats.invalid == {SECOND_IDENTITY: 1}


def feed_reason(route: Route, data: dict, row: int) -> str | None:
    invalid = route.process_record(data, row, stream_key(*route.stats.stream))
    return None if invalid is None else invalid.reason

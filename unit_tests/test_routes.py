"""Routes: which streams are admitted, one route per stream, shared endpoints per API type,
batch sizes that fit the rate limit, and the ordering key of each API type."""

from __future__ import annotations

from destination_heap_analytics.config import ApiType, RateLimit
from destination_heap_analytics.routes import (
    Ignored,
    Routes,
    effective_batch_size,
    ordering_key,
)
from destination_heap_analytics.senders import SenderPool
from unit_tests.builders import heap_config, make_catalog
from unit_tests.fakes import FakeClock


class RecordingClients:
    def __init__(self) -> None:
        self.made: list[tuple[str, str | None]] = []

    def __call__(self, endpoint_url: str, app_id: str, bulk_key: str | None, **_) -> object:
        self.made.append((endpoint_url, bulk_key))
        return self

    def close(self) -> None:
        pass


def make_routes(*streams: tuple[str | None, str], clients: RecordingClients | None = None):
    config = heap_config(batch_size=10)
    clock = FakeClock()
    return Routes(
        config, make_catalog(*streams), clock, SenderPool(2, clock), clients or RecordingClients()
    )


# --- Routes ----------------------------------------------------------------------------------


def test_each_catalog_stream_gets_its_own_route_built_once():
    routes = make_routes((None, "users"), ("shop", "orders"))

    users = routes.route_for((None, "users"))
    orders = routes.route_for(("shop", "orders"))

    assert users is routes.route_for((None, "users"))
    assert users is not orders and users.loader is not orders.loader
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

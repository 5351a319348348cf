"""Where each stream's records go: one route per mapped stream, each with its own batches.

A route is the way of one stream to Heap: its transform (the stream's mapping, compiled once),
its batcher (its own batches: records of two streams never share one), and its delivery. What
Heap limits per app and per API is shared by the routes of one API type: the HTTP client for the
endpoint, the pacer (the per-app track limit covers every track stream), and the ordering keys
(last write wins per identity or account, whichever stream the record came from). All routes
send through one pool of sending threads, and one rejection guard judges the whole sync.

Routes are built at a stream's first record, so a catalog of many streams costs nothing for
the streams that send none. What is irreversible is checked before that, when the routes are
made: a stream that deletes users must name its column in the catalog's schema, and the config
must hold the User Deletion API's key (`check_deletions`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from airbyte_cdk.models import ConfiguredAirbyteCatalog

from destination_heap_analytics.config.settings import (
    ApiType,
    ColumnMapping,
    HeapConfig,
    Pacing,
    RateLimit,
    StreamId,
    api_key_required_error,
    auth_token_url,
    endpoint_url,
    stream_label,
)
from destination_heap_analytics.counters import RouteStats
from destination_heap_analytics.delivery.batch_delivery import BatchDelivery
from destination_heap_analytics.delivery.batcher import Batcher, OrderingKeys
from destination_heap_analytics.delivery.pacer import Pacer
from destination_heap_analytics.delivery.rejected_records import RejectedRecords, refused_reason
from destination_heap_analytics.delivery.rejection_guard import RejectionGuard
from destination_heap_analytics.delivery.retry import RetryPolicy
from destination_heap_analytics.delivery.senders import SenderPool
from destination_heap_analytics.heap.client import HeapClient, HeapRejected, UserDeletionClient
from destination_heap_analytics.mapping.activation import CatalogError
from destination_heap_analytics.mapping.column_report import (
    ColumnReport,
    declares_column,
    schema_warnings,
)
from destination_heap_analytics.mapping.identify_rules import IdentifyPairs
from destination_heap_analytics.mapping.streams import StreamMatcher
from destination_heap_analytics.mapping.transformer import (
    HeapItem,
    InvalidRecord,
    RecordTransformer,
    Transform,
)
from destination_heap_analytics.sync.dry_run import DryRun, DryRunDelivery
from destination_heap_analytics.sync_clock import Clock


class Ignored(Enum):
    """Why a stream has no route."""

    NOT_IN_CATALOG = "not in the configured catalog"
    NO_MAPPING = "no mapping"


class Route:
    """One stream's records: transform, then batch for delivery."""

    def __init__(
        self,
        stats: RouteStats,
        transform: Transform,
        batcher: Batcher,
        column_report: ColumnReport,
    ) -> None:
        """`transform` raises InvalidRecord for a record that must not be sent."""
        self.stats = stats
        self.batcher = batcher
        self.column_report = column_report
        self._transform = transform
        self._batch = batcher.process_item
        self.sampling_columns = True

    def process_record(self, data: dict, row: int, key_of_stream: bytes) -> InvalidRecord | None:
        """Runs once per record. Returns why when the record is invalid (counted).

        `key_of_stream` is the stream part of the idempotency key: the record's own
        (namespace, name), `transformer.stream_key`, which may differ from the route's catalog
        stream when the catalog matched it by name; keys stay those of 0.3.0."""
        stats = self.stats
        stats.records += 1
        if self.sampling_columns:
            self.column_report.observe(data)
            self.sampling_columns = self.column_report.sampling
        try:
            item = self._transform(data, key_of_stream)
        except InvalidRecord as invalid:
            stats.invalid[invalid.reason] += 1
            return invalid
        self._batch(item, row)
        return None


@dataclass
class _Endpoint:
    """What the routes of one API type share: Heap limits these per app and per API, and last
    write wins per identity or account across them (`ordering`, None for events). A dry run has
    no client (nothing is sent) and a pacer that never waits."""

    url: str
    bulk_key: str | None
    client: HeapClient | None
    pacer: Pacer
    batch_size: int
    ordering: OrderingKeys | None
    admit: Callable[[HeapItem], HeapItem] | None = None
    """Identify: Heap's ignore rules over the sync's pairs (`identify_rules`), after the
    transform; None for the other APIs."""


class ToHeap:
    """How batches leave in a real sync: to Heap, through one HTTP client and pacer per API type,
    judged by the sync's one rejection guard, their refused items kept in the rejected-records
    bucket when one is configured. The other way is `dry_run.DryRun`; `HeapWriter.start`
    chooses once."""

    withholds_states = False

    def __init__(
        self,
        config: HeapConfig,
        clock: Clock,
        client_factory: Callable[..., HeapClient] = HeapClient,
        rejected: RejectedRecords | None = None,
        deletion_client_factory: Callable[..., HeapClient] = UserDeletionClient,
    ) -> None:
        """`client_factory` makes the HTTP client of each ingestion API type and identify,
        `deletion_client_factory` the User Deletion API's (fakes in unit tests)."""
        self._config = config
        self._clock = clock
        self._client_factory = client_factory
        self._deletion_client_factory = deletion_client_factory
        self._rejected = rejected
        self._policy = RetryPolicy(config.max_retry_seconds)
        self._guard = RejectionGuard()
        """One for the sync: its evidence is every stream's records (rejection_guard.py)."""

    def client(self, api_type: ApiType, url: str, bulk_key: str | None) -> HeapClient:
        config = self._config
        pool_size = config.max_concurrent_requests
        if api_type is ApiType.DELETE_USERS:
            assert config.api_key is not None  # check_deletions refused the catalog otherwise
            auth_url = auth_token_url(config.base_url)
            return self._deletion_client_factory(
                url, config.app_id, config.api_key, auth_url, self._clock, pool_size=pool_size
            )
        return self._client_factory(url, config.app_id, bulk_key, pool_size=pool_size)

    def pacing(self, pacing: Pacing) -> Pacing:
        return pacing

    def delivery(
        self, stream: StreamId, mapping: ColumnMapping, endpoint: _Endpoint, stats: RouteStats
    ) -> BatchDelivery:
        assert endpoint.client is not None
        return BatchDelivery(
            endpoint.client,
            endpoint.pacer,
            self._policy,
            stats.delivery,
            self._clock,
            guard=self._guard,
            ordering_key=endpoint.ordering.key if endpoint.ordering is not None else None,
            keep_refused=self._keeper_of_refusals(stream),
        )

    def _keeper_of_refusals(
        self, stream: StreamId
    ) -> Callable[[int, dict, HeapRejected], None] | None:
        """What puts a refused item of `stream` into the rejected-records bucket, if any."""
        rejected = self._rejected
        if rejected is None:
            return None
        namespace, name = stream

        def keep(row: int, item: dict, refusal: HeapRejected) -> None:
            rejected.add(
                namespace, name, row, item, refused_reason(refusal.status, refusal.message)
            )

        return keep


class Routes:
    def __init__(
        self,
        config: HeapConfig,
        catalog: ConfiguredAirbyteCatalog,
        clock: Clock,
        pool: SenderPool,
        sending: ToHeap | DryRun,
    ) -> None:
        """`sending` is how batches leave: to Heap, or, in a dry run, nowhere."""
        self._sending = sending
        self._config = config
        self.streams = StreamMatcher(catalog, config)
        check_deletions(self.streams, config)
        self._clock = clock
        self._pool = pool
        self._endpoints: dict[ApiType, _Endpoint] = {}
        self._routes: dict[StreamId, Route] = {}
        self.built: list[Route] = []
        """Routes in the order their streams first appeared."""

    def schema_warnings(self) -> list[str]:
        """Mapped columns missing from each catalog stream's declared schema, once, at start."""
        warnings = []
        for stream, json_schema in self.streams.schemas.items():
            mapping = self.streams.mapping(stream)
            if mapping is not None:
                warnings += schema_warnings(stream[1], mapping.configured_columns(), json_schema)
        return warnings

    def route_for(self, catalog_stream: StreamId | None) -> Route | Ignored:
        """The route of a catalog stream (`streams.catalog_stream` of a record's stream),
        built at its first record."""
        if catalog_stream is None:
            return Ignored.NOT_IN_CATALOG
        route = self._routes.get(catalog_stream)
        if route is not None:
            return route
        mapping = self.streams.mapping(catalog_stream)
        if mapping is None:
            return Ignored.NO_MAPPING
        route = self._routes[catalog_stream] = self._build(catalog_stream, mapping)
        self.built.append(route)
        return route

    def built_route(self, catalog_stream: StreamId | None) -> Route | None:
        """The route of a catalog stream if it has had records, else None."""
        return self._routes.get(catalog_stream) if catalog_stream is not None else None

    @property
    def paced_seconds(self) -> float:
        return sum(endpoint.pacer.waited_seconds for endpoint in self._endpoints.values())

    def close(self) -> None:
        for endpoint in self._endpoints.values():
            if endpoint.client is not None:
                endpoint.client.close()

    def _build(self, stream: StreamId, mapping: ColumnMapping) -> Route:
        endpoint = self._endpoint(mapping.api_type)
        stats = RouteStats(stream, mapping.api_type)
        transform = RecordTransformer(mapping, stats=stats.transform).transform
        if endpoint.admit is not None:
            transform = screened(transform, endpoint.admit)
        if isinstance(self._sending, DryRun):
            delivery: BatchDelivery | DryRunDelivery = self._sending.delivery(
                mapping, self.streams.schema(stream), endpoint.url, endpoint.bulk_key, stats
            )
        else:
            delivery = self._sending.delivery(stream, mapping, endpoint, stats)
        batcher = Batcher(
            delivery.deliver,
            endpoint.batch_size,
            self._pool,
            ordering=endpoint.ordering,
            settled=delivery.settled,
        )
        return Route(stats, transform, batcher, ColumnReport(mapping.configured_columns()))

    def _endpoint(self, api_type: ApiType) -> _Endpoint:
        endpoint = self._endpoints.get(api_type)
        if endpoint is None:
            config = self._config
            pacing = config.pacing_for(api_type)
            url = endpoint_url(config.base_url, api_type)
            bulk_key = config.bulk_key_for(api_type)
            client = self._sending.client(api_type, url, bulk_key)
            pacer = Pacer(self._sending.pacing(pacing), self._clock)
            batch_size = effective_batch_size(config.items_per_request(api_type), pacing.per_app)
            key = ordering_key(api_type)
            ordering = OrderingKeys(key) if key is not None else None
            admit = IdentifyPairs().admit if api_type is ApiType.IDENTIFY else None
            endpoint = _Endpoint(url, bulk_key, client, pacer, batch_size, ordering, admit)
            self._endpoints[api_type] = endpoint
        return endpoint


def screened(transform: Transform, admit: Callable[[HeapItem], HeapItem]) -> Transform:
    """The transform, then a rule over what the sync has sent so far (both may refuse)."""

    def transform_and_admit(data: dict, key_of_stream: bytes) -> HeapItem:
        return admit(transform(data, key_of_stream))

    return transform_and_admit


def check_deletions(streams: StreamMatcher, config: HeapConfig) -> None:
    """Deletion is irreversible, so a stream that deletes users must name its column in the
    catalog's schema (a misspelt or renamed column would otherwise fail every record quietly,
    and the users asked to be deleted would stay), and the config must hold the api_key."""
    for stream, json_schema in streams.schemas.items():
        mapping = streams.mapping(stream)
        if mapping is None or mapping.api_type is not ApiType.DELETE_USERS:
            continue
        if config.api_key is None:
            raise api_key_required_error()
        column = mapping.identity_column or mapping.user_id_column
        assert column is not None  # config/settings.py and activation.py require one of the two
        if not declares_column(json_schema, column):
            raise CatalogError(
                f"stream '{stream_label(stream)}' deletes users by the column '{column.name}', "
                "which its json_schema in the configured catalog does not declare; deletion "
                "cannot be undone, so the column must be in the stream's schema (check the "
                "mapping's column name)"
            )


def effective_batch_size(batch_size: int, per_app: RateLimit | None) -> int:
    """A batch must fit the per-app rate limit, or it could never be sent."""
    return min(batch_size, per_app.items) if per_app is not None else batch_size


def ordering_key(api_type: ApiType) -> Callable[[dict], str] | None:
    """Which item field must keep its input order across batches (last write wins in Heap)."""
    if api_type is ApiType.ADD_USER_PROPERTIES:
        return operator.itemgetter("identity")
    if api_type is ApiType.ADD_ACCOUNT_PROPERTIES:
        return operator.itemgetter("account_id")
    return None

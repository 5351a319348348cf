"""The one definition of spec.json: every field, description and API option is written once here.

spec.json is the file the `spec` command prints and config/schema.py reads at run time. It is
written by this module, never by hand:

    .venv/bin/python -m destination_heap_analytics.config.spec_definition

and unit_tests/config/test_spec_definition.py fails whenever the committed file is not exactly what
`spec_json()` returns, so the two cannot drift.

The file repeats the `api` options under `streams.items` in full, on purpose: Airbyte's form
does not follow `$ref` (docs/architecture.md explains why), so the spec must be expanded. The
repetition is built here from one definition instead of being written twice.

Heap's numbers (limits, hosts) come from heap/limits.py, read when the spec is built. Nothing
imports this module at run time, and it imports nothing of the connector but heap_limits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from destination_heap_analytics.heap import limits as heap_limits

SPEC_PATH = Path(__file__).resolve().parent.parent / "spec.json"

Schema = dict[str, Any]


def spoken(number: int) -> str:
    """A number as every description writes it: `1,000`, `86,400`, `16`."""
    return f"{number:,}"


def spoken_range(low: int, high: int) -> str:
    return f"{spoken(low)} to {spoken(high)}"


def field(
    type_: str,
    title: str | None = None,
    description: str | None = None,
    *,
    order: int | None = None,
    const: Any = None,
    enum: Iterable[Any] | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    default: Any = None,
    examples: Iterable[Any] | None = None,
    secret: bool = False,
    always_show: bool = False,
    hidden: bool = False,
) -> Schema:
    """One schema node, its keys always in the same order; None leaves a key out (no field of
    the spec has None as its const or default)."""
    node: Schema = {} if order is None else {"order": order}
    node["type"] = type_
    optional = {
        "const": const,
        "enum": None if enum is None else list(enum),
        "title": title,
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
        "default": default,
        "examples": None if examples is None else list(examples),
    }
    node.update({key: value for key, value in optional.items() if value is not None})
    flags = {"airbyte_secret": secret, "always_show": always_show, "airbyte_hidden": hidden}
    node.update({key: True for key, value in flags.items() if value})
    return node


def discriminator(value: str, title: str | None = None) -> Schema:
    """The field that tells a storage option apart: `const` for the UI rules, and the one-value
    `enum` with its `default` that Airbyte's own ObjectStorageSpec writes."""
    return field("string", title, const=value, enum=[value], default=value)


def hidden_choice(
    title: str, description: str, order: int, key: str, choices: Mapping[str, str | None]
) -> Schema:
    """A hidden oneOf of options that differ only in `key` (choices: const -> option title)."""
    values = list(choices)
    options = [
        {
            "title": choices[value] or value,
            "type": "object",
            "additionalProperties": True,
            "required": [key],
            "properties": {key: discriminator(value)},
        }
        for value in values
    ]
    node = field("object", title, description, order=order, hidden=True)
    node["default"] = {key: values[0]}
    node["oneOf"] = options
    return node


# -- The mapping: one Heap API and its columns ---------------------------------------------------

CASE_AND_PATHS = "Case sensitive; dots reach nested columns."
"""What every single-column field says about the name it takes (config.ColumnPath)."""

PATHS = "Nested columns use dots (identities.provider), list items their index (visits.0.date)."
"""How a property column reaches into a record; the same rule for every API (config.ColumnPath)."""

RENAME = (
    "Rename a property with 'as': 'plan as subscription_plan' sends the value at plan under the "
    "name subscription_plan."
)
RENAME_EXAMPLE = "plan as subscription_plan, profile.city"

EVENT_COLUMN_TITLE = "Event Column"
EVENT_NAME_TITLE = "Event Name"
ONE_EVENT_SOURCE = f"Set exactly one of {EVENT_COLUMN_TITLE} and {EVENT_NAME_TITLE}."


def column_description(value: str) -> str:
    return f"The column whose value is {value}. {CASE_AND_PATHS}"


def api_type_field(api_type: str, title: str) -> Schema:
    return field(
        "string",
        "API Type",
        f"Always '{api_type}' for {title}.",
        order=0,
        const=api_type,
        default=api_type,
        examples=[api_type],
    )


def property_columns(kind: str, example: str) -> Schema:
    return field(
        "string",
        "Property Columns",
        f"Columns sent as {kind} properties, split by comma (,), or * for every column. {PATHS} "
        f"Case sensitive. {RENAME}",
        order=1,
        default="*",
        examples=[example, RENAME_EXAMPLE, "*"],
    )


IDENTITY_COLUMN_TITLE = "Identity Column"
USER_ID_COLUMN_TITLE = "User ID Column"
ONE_USER_KEY = f"Set exactly one of {IDENTITY_COLUMN_TITLE} and {USER_ID_COLUMN_TITLE}."


def identity_column(order: int, example: str, note: str = "") -> Schema:
    identity = f"the user's identity (at most {spoken(heap_limits.MAX_IDENTITY_LENGTH)} characters)"
    description = column_description(identity) + (f" {note}" if note else "")
    return field("string", IDENTITY_COLUMN_TITLE, description, order=order, examples=[example])


def user_id_column(order: int, note: str = "") -> Schema:
    user_id = (
        "the user's Heap SDK user_id: an integer from 0 to "
        f"{spoken(heap_limits.MAX_USER_ID)}, as a number or as its text"
    )
    description = column_description(user_id) + (f" {note}" if note else "")
    return field(
        "string", USER_ID_COLUMN_TITLE, description, order=order, examples=["heap_user_id"]
    )


def exclude_columns(order: int) -> Schema:
    return field(
        "string",
        "Exclude Columns",
        "Optional. Columns never sent as properties, split by comma (,): removed from what * or "
        "an object column sends, with everything under them (internal.notes removes "
        "internal.notes.x too).",
        order=order,
        examples=["secret,internal.notes"],
    )


def event_fields() -> dict[str, Schema]:
    """The fields of Track Events after Property Columns, orders 2 to 7."""
    event_name_range = spoken_range(1, heap_limits.MAX_EVENT_NAME_LENGTH)
    return {
        "event_column": field(
            "string",
            EVENT_COLUMN_TITLE,
            f"{column_description('the event name')} {ONE_EVENT_SOURCE}",
            order=2,
            examples=["order_name", "identities.connection"],
        ),
        "event_name": field(
            "string",
            EVENT_NAME_TITLE,
            "A constant event name for every record of the stream, instead of an "
            f"{EVENT_COLUMN_TITLE} ({event_name_range} characters). {ONE_EVENT_SOURCE}",
            order=3,
            examples=["Order Completed"],
        ),
        "identity_column": identity_column(4, "email", ONE_USER_KEY),
        "user_id_column": user_id_column(5, ONE_USER_KEY),
        "timestamp_column": field(
            "string",
            "Timestamp Column",
            "Optional. The column holding when the event happened: an ISO 8601 string, another "
            "date string, or epoch seconds / milliseconds. The time of loading is used when it "
            "is not set or empty.",
            order=6,
            examples=["updated_at"],
        ),
        "idempotency_key_column": field(
            "string",
            "Idempotency Key Column",
            "Optional. A column that uniquely identifies each event, sent as Heap's "
            "idempotency_key so a re-run never duplicates events. When not set, the key is a "
            "hash of the stream name and the whole record.",
            order=7,
            examples=["event_id"],
        ),
    }


@dataclass(frozen=True)
class Properties:
    """An API that sends properties: Property Columns first, Exclude Columns last."""

    kind: str
    example: str
    exclude_order: int


@dataclass(frozen=True)
class ApiOption:
    """One Heap API as the form offers it."""

    api_type: str
    title: str
    effect: str
    """What each record does, for the option's description."""
    path: str
    """The endpoint under the base URL (heap_limits)."""
    fields: Mapping[str, Schema]
    """The option's own fields (between Property Columns and Exclude Columns, if it has them)."""
    required: tuple[str, ...]
    """The columns the option requires; a choice between two columns is the rule of
    config/settings.py."""
    properties: Properties | None = None

    def schema(self) -> Schema:
        properties: dict[str, Schema] = {"api_type": api_type_field(self.api_type, self.title)}
        required = ["api_type"]
        if self.properties is not None:
            kind, example = self.properties.kind, self.properties.example
            properties["property_columns"] = property_columns(kind, example)
            required.append("property_columns")
        properties.update(self.fields)
        if self.properties is not None:
            properties["exclude_columns"] = exclude_columns(self.properties.exclude_order)
        return {
            "title": self.title,
            "description": f"Each record {self.effect} (POST {self.path}).",
            "type": "object",
            "required": [*required, *self.required],
            "properties": properties,
        }


def identify_fields() -> dict[str, Schema]:
    return {
        "identity_column": identity_column(1, "email"),
        "user_id_column": user_id_column(2),
        "timestamp_column": field(
            "string",
            "Timestamp Column",
            "Optional. The column holding when the user was identified, read as for Track "
            "Events and sent as Heap's timestamp; left out when not set or empty.",
            order=3,
            examples=["identified_at"],
        ),
    }


def deletion_fields() -> dict[str, Schema]:
    return {
        "identity_column": identity_column(1, "email", ONE_USER_KEY),
        "user_id_column": user_id_column(2, ONE_USER_KEY),
    }


def api_options() -> list[ApiOption]:
    account_id_column = field(
        "string",
        "Account ID Column",
        column_description("the account ID"),
        order=3,
        examples=["company_name", "identities.user_id"],
    )
    deletion_batch = spoken(heap_limits.MAX_USERS_PER_DELETION_REQUEST)
    user_ids = spoken(heap_limits.MAX_USER_IDS_PER_IDENTITY)
    return [
        ApiOption(
            api_type="track",
            title="Track Events",
            effect="becomes one server-side event",
            path=heap_limits.TRACK_PATH,
            fields=event_fields(),
            required=(),
            properties=Properties("event", "subject,variation", exclude_order=8),
        ),
        ApiOption(
            api_type="add_user_properties",
            title="Add User Properties",
            effect="sets properties on one identified user",
            path=heap_limits.ADD_USER_PROPERTIES_PATH,
            fields={"identity_column": identity_column(3, "user_id")},
            required=("identity_column",),
            properties=Properties("user", "age,language,profession", exclude_order=4),
        ),
        ApiOption(
            api_type="add_account_properties",
            title="Add Account Properties",
            effect="sets properties on one account",
            path=heap_limits.ADD_ACCOUNT_PROPERTIES_PATH,
            fields={"account_id_column": account_id_column},
            required=("account_id_column",),
            properties=Properties(
                "account",
                "is_in_good_standing,revenue_potential,account_hq,subscription",
                exclude_order=4,
            ),
        ),
        ApiOption(
            api_type="identify",
            title="Identify Users",
            effect=(
                "moves the events of a Heap SDK user_id to an identity; Heap keeps the first "
                f"identity of a user_id and at most {user_ids} user_ids per identity a month"
            ),
            path=heap_limits.IDENTIFY_PATH,
            fields=identify_fields(),
            required=("identity_column", "user_id_column"),
        ),
        ApiOption(
            api_type="delete_users",
            title="Delete Users",
            effect=(
                "deletes one user and all their data from Heap, irreversibly; users go in "
                f"requests of up to {deletion_batch}, and API Key is required"
            ),
            path=heap_limits.USER_DELETION_PATH,
            fields=deletion_fields(),
            required=(),
        ),
    ]


def api_field(order: int, description: str) -> Schema:
    """The `api` field: written once, placed at the top level and in every `streams` entry."""
    node = field("object", "API Type", description, order=order)
    node["additionalProperties"] = True
    node["oneOf"] = [option.schema() for option in api_options()]
    return node


def streams_field(order: int) -> Schema:
    node = field(
        "array",
        "Streams",
        "Optional. A mapping per stream, so one connection loads users, accounts and events, "
        "each to its own Heap API. A stream not listed here uses the default mapping above.",
        order=order,
    )
    node["items"] = {
        "type": "object",
        "title": "Stream Mapping",
        "required": ["stream", "api"],
        "additionalProperties": True,
        "properties": {
            "stream": field(
                "string",
                "Stream",
                "The stream's name, as in the catalog.",
                order=0,
                examples=["users"],
            ),
            "namespace": field(
                "string",
                "Namespace",
                "Optional. The stream's namespace, when streams of the same name come from "
                "several namespaces.",
                order=1,
                examples=["public"],
            ),
            "api": api_field(2, "The Heap API and columns for this stream."),
        },
    }
    return node


# -- Sending: batches, concurrency, pacing, retries ----------------------------------------------


def ranged_integer(
    title: str,
    description: str,
    *,
    order: int,
    low: int,
    high: int,
    default: int | None,
    examples: Iterable[int],
) -> Schema:
    """An integer field whose description states its range (`{range}`), from the same numbers."""
    return field(
        "integer",
        title,
        description.format(range=spoken_range(low, high)),
        order=order,
        minimum=low,
        maximum=high,
        default=default,
        examples=examples,
    )


MAX_RETRY_HOURS = 24


def sending_fields() -> dict[str, Schema]:
    bulk = heap_limits.MAX_ITEMS_PER_BULK_REQUEST
    per_app, _ = heap_limits.TRACK_BULK_LIMIT_PER_APP
    per_identity, _ = heap_limits.TRACK_BULK_LIMIT_PER_IDENTITY
    return {
        "batch_size": ranged_integer(
            "Batch Size",
            "Items per request to Heap's bulk API ({range}). 1 sends one record per request, "
            "exactly as version 0.1.0 did.",
            order=4,
            low=1,
            high=bulk,
            default=bulk,
            examples=[bulk, 1],
        ),
        "max_concurrent_requests": ranged_integer(
            "Max Concurrent Requests",
            "Requests to Heap in flight at once ({range}).",
            order=5,
            low=1,
            high=16,
            default=4,
            examples=[4],
        ),
        "max_events_per_minute": ranged_integer(
            "Max Events Per Minute",
            "Client-side pacing: the most items sent per rolling minute ({range}). When not set, "
            "Heap's documented limit for the chosen API is used "
            f"({spoken(per_app)} per minute for bulk track, plus {spoken(per_identity)} per "
            "minute per identity); 0 turns client-side pacing off.",
            order=6,
            low=0,
            high=10_000_000,
            default=None,
            examples=[per_app, 0],
        ),
        "max_retry_seconds": ranged_integer(
            "Max Retry Seconds",
            "How long one request is retried after timeouts, connection errors, HTTP 429 or 5xx "
            f"before the sync fails ({{range}}, i.e. {MAX_RETRY_HOURS} hours).",
            order=7,
            low=0,
            high=MAX_RETRY_HOURS * 60 * 60,
            default=600,
            examples=[600],
        ),
    }


# -- Rejected records: Airbyte's object storage shape ---------------------------------------------

AWS_CREDENTIALS_DOC = (
    'Read more <a href="https://docs.aws.amazon.com/general/latest/gr/aws-sec-cred-types.html'
    '#access-keys-and-secret-access-keys">here</a>.'
)

S3_REGIONS = (
    "",
    "af-south-1",
    "ap-east-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
)
"""AWS's region codes; "" leaves the region to the environment."""

STORAGE_TYPE = "storage_type"
STORAGE_TYPE_TITLE = "Object Storage Type"


def aws_key(title: str, description: str, order: int, example: str) -> Schema:
    """Half of an AWS access key pair: a secret, shown in the form even though it is optional."""
    return field(
        "string",
        title,
        f"{description} {AWS_CREDENTIALS_DOC}",
        order=order,
        examples=[example],
        secret=True,
        always_show=True,
    )


def s3_fields() -> dict[str, Schema]:
    """The S3 option's fields after its discriminator, with the names Airbyte's platform reads."""
    return {
        "access_key_id": aws_key(
            "Access Key ID",
            "The access key ID to access the S3 bucket. The connector writes, lists and deletes "
            "objects under the prefix path (s3:PutObject, s3:ListBucket, s3:DeleteObject). Leave "
            "empty to use a Role ARN, or the credentials of the environment (AWS_* variables, an "
            "instance profile).",
            1,
            "A012345678910EXAMPLE",
        ),
        "secret_access_key": aws_key(
            "Secret Access Key",
            "The corresponding secret to the access key ID.",
            2,
            "a012345678910ABCDEFGH/AbCdEfGhEXAMPLEKEY",
        ),
        "role_arn": field(
            "string",
            "Role ARN",
            "The ARN of an AWS role to assume, with the access key above or the environment's "
            "credentials (Airbyte Cloud provides them).",
            order=3,
            examples=["arn:aws:iam::123456789:role/ExternalIdIsYourWorkspaceId"],
        ),
        "s3_bucket_name": field(
            "string",
            "S3 Bucket Name",
            'The name of the S3 bucket. Read more <a href="https://docs.aws.amazon.com/AmazonS3/'
            'latest/userguide/create-bucket-overview.html">here</a>.',
            order=4,
            examples=["airbyte_sync"],
        ),
        "s3_bucket_region": field(
            "string",
            "S3 Bucket Region",
            'The region of the S3 bucket. See <a href="https://docs.aws.amazon.com/AWSEC2/latest/'
            "UserGuide/using-regions-availability-zones.html#concepts-available-regions"
            "\">here</a> for all region codes. Empty: the environment's region (AWS_REGION), "
            "else us-east-1.",
            order=5,
            enum=S3_REGIONS,
            default="",
            examples=["us-east-1"],
        ),
        "s3_endpoint": field(
            "string",
            "S3 Endpoint",
            "Optional. The endpoint of an S3-compatible store (MinIO, Cloudflare R2, ...), with "
            'http:// or https://. Empty for AWS S3. Read more <a href="https://docs.aws.amazon.'
            'com/general/latest/gr/s3.html">here</a>.',
            order=6,
            examples=["http://localhost:9000"],
        ),
        "bucket_path": field(
            "string",
            "Prefix Path in the Bucket",
            "All files in the bucket will be prefixed by this.",
            order=7,
            examples=["prefix/"],
        ),
        "format": hidden_choice(
            "Output Format",
            "Format of the data output: JSON Lines, one rejected record per line (records are "
            "nested, so CSV is not offered).",
            8,
            "format_type",
            {"JSONL": "JSON Lines: Newline-delimited JSON"},
        ),
        "compression": hidden_choice(
            "Compression",
            "Whether the output files should be compressed. If compression is selected, the "
            'output filename will have an extra extension (GZIP: ".jsonl.gz").',
            9,
            "compression_type",
            {"No Compression": None, "GZIP": None},
        ),
    }


def storage_option(value: str, required: Iterable[str], fields: Mapping[str, Schema]) -> Schema:
    properties = {STORAGE_TYPE: discriminator(value, STORAGE_TYPE_TITLE), **fields}
    return {
        "title": value,
        "type": "object",
        "additionalProperties": True,
        "required": [STORAGE_TYPE, *required],
        "properties": properties,
    }


def object_storage_field(order: int) -> Schema:
    node = field(
        "object",
        "Object Storage Configuration",
        "Optional. Where records that do not reach Heap go: every invalid record and every record "
        "Heap refuses is written, with its stream, row number and reason, to JSON Lines files in "
        "your S3 bucket, under <Prefix Path>/<sync id>/<namespace>/<stream>/. The values of "
        "those records are written only there, never to the sync log.",
        order=order,
    )
    node["additionalProperties"] = True
    node["oneOf"] = [
        storage_option("None", [], {}),
        storage_option("S3", ["s3_bucket_name", "s3_bucket_region", "bucket_path"], s3_fields()),
    ]
    return node


# -- The whole spec -----------------------------------------------------------------------------


def connection_properties() -> dict[str, Schema]:
    """The top-level fields, in the order the form shows them."""
    return {
        "app_id": field(
            "string",
            "App Id",
            "The Environment ID of your Heap project (Account > Manage > Projects), usually your "
            'Main Production environment. Read <a href="https://help.heap.io/data-management/'
            'data-management-features/projects-environments/">the doc</a> to learn more.',
            order=0,
            examples=["11"],
        ),
        "base_url": field(
            "string",
            "Base URL",
            f"The base URL of Heap's server-side API: {heap_limits.US_BASE_URL} for US data "
            f"centres, {heap_limits.EU_BASE_URL} for the EU. Must use https://.",
            order=1,
            default=heap_limits.US_BASE_URL,
            examples=[heap_limits.US_BASE_URL, heap_limits.EU_BASE_URL],
        ),
        "api": api_field(
            2,
            "The default mapping: the Heap API and columns used for every stream that Streams "
            "does not list. Optional when Streams lists every stream to load; streams with no "
            "mapping are ignored and counted.",
        ),
        "streams": streams_field(3),
        **sending_fields(),
        "dry_run": field(
            "boolean",
            "Dry Run",
            "Read, check and transform every record exactly as a real sync would, send nothing "
            "to Heap, and log what would have been sent (counts per stream, invalid records, and "
            "the property names and value types of the first items, never their values). No "
            "state is emitted, so the next real sync starts from the same place. Check "
            "connection then validates the configuration without sending its preflight event.",
            order=8,
            default=False,
        ),
        "object_storage_config": object_storage_field(9),
        "api_key": field(
            "string",
            "API Key",
            "Only for the Delete Users API type (and users soft-deleted in Airbyte's mapping "
            "screen), where it is required: the key of Heap's User Deletion API, generated by "
            "an admin under Account > Manage > Privacy & Security. It works only with the Main "
            "Production environment's ID as App Id. Not used otherwise.",
            order=10,
            secret=True,
        ),
    }


def build_spec() -> Schema:
    """The whole spec, as the `spec` command prints it."""
    return {
        "documentationUrl": "https://docs.airbyte.com/integrations/destinations/heap-analytics",
        "supported_destination_sync_modes": ["overwrite", "append", "append_dedup"],
        "supportsIncremental": True,
        "connectionSpecification": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Heap Analytics Destination Spec",
            "type": "object",
            "required": ["base_url", "app_id"],
            "additionalProperties": True,
            "properties": connection_properties(),
        },
    }


def spec_json() -> str:
    """spec.json's exact text."""
    return json.dumps(build_spec(), indent=2) + "\n"


def main() -> None:
    SPEC_PATH.write_text(spec_json(), encoding="utf-8")
    print(f"wrote {SPEC_PATH}")


if __name__ == "__main__":
    main()

"""autumn_core: an embedded, in-process billing and entitlements engine."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version

from autumn_core.aio import AsyncAutumn
from autumn_core.catalog import (
    INF,
    Catalog,
    Feature,
    FreeTrial,
    Item,
    Price,
    Product,
    Rollover,
    Tier,
)
from autumn_core.clock import Clock, ManualClock, SystemClock
from autumn_core.controls import (
    AutoTopup,
    BillingControls,
    OverageAllowed,
    PurchaseLimit,
    SpendLimit,
    UsageAlert,
    UsageLimit,
)
from autumn_core.errors import (
    AutumnError,
    Conflict,
    CustomerNotFound,
    EntityAlreadyExists,
    EntityNotFound,
    FeatureNotFound,
    GatewayError,
    IdempotencyConflict,
    InsufficientBalance,
    InvalidCatalog,
    InvalidRequest,
    NotFound,
    PaymentError,
    PaymentFailed,
    ProductAlreadyAttached,
    ProductNotFound,
    StoreError,
    WebhookSignatureError,
)
from autumn_core.facade import Autumn, open
from autumn_core.ports import Gateway, Store, StoreTransaction
from autumn_core.results import (
    UNSET,
    AttachPreview,
    AttachResult,
    Balance,
    BalanceRow,
    ByEmail,
    CheckResult,
    Customer,
    CustomerData,
    CustomerProduct,
    Entity,
    Event,
    GatewayEvent,
    Invoice,
    InvoiceLine,
    RolloverBalance,
    TrackRequest,
    TrackResult,
)
from autumn_core.serialization import from_dict, to_dict

try:
    #: The installed distribution's version (``autumn --version`` prints the same).
    __version__ = _package_version("autumn-embedded")
except PackageNotFoundError:  # pragma: no cover - imported from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "INF",
    "UNSET",
    "AsyncAutumn",
    "AttachPreview",
    "AttachResult",
    "AutoTopup",
    "Autumn",
    "AutumnError",
    "Balance",
    "BalanceRow",
    "BillingControls",
    "ByEmail",
    "Catalog",
    "CheckResult",
    "Clock",
    "Conflict",
    "Customer",
    "CustomerData",
    "CustomerNotFound",
    "CustomerProduct",
    "Entity",
    "EntityAlreadyExists",
    "EntityNotFound",
    "Event",
    "Feature",
    "FeatureNotFound",
    "FreeTrial",
    "Gateway",
    "GatewayError",
    "GatewayEvent",
    "IdempotencyConflict",
    "InsufficientBalance",
    "InvalidCatalog",
    "InvalidRequest",
    "Invoice",
    "InvoiceLine",
    "Item",
    "ManualClock",
    "NotFound",
    "OverageAllowed",
    "PaymentError",
    "PaymentFailed",
    "Price",
    "Product",
    "ProductAlreadyAttached",
    "ProductNotFound",
    "PurchaseLimit",
    "Rollover",
    "RolloverBalance",
    "SpendLimit",
    "Store",
    "StoreError",
    "StoreTransaction",
    "SystemClock",
    "Tier",
    "TrackRequest",
    "TrackResult",
    "UsageAlert",
    "UsageLimit",
    "WebhookSignatureError",
    "from_dict",
    "open",
    "to_dict",
]

"""The trial claim (docs/rules.md T1-T5, DF2): the one rule of what makes a trial used up.

A trial is claimed in the store, inside the transaction that grants it: once per subject
(product, customer, entity) and, when the product's own trial is ``unique_fingerprint``, once
per (product, fingerprint) across every customer. Planning only reads (``claimed``); carrying
the plan out inserts (``claim``), and the store's constraint decides a race.
"""

from __future__ import annotations

import attrs

from autumn_core.app.unit import Unit
from autumn_core.catalog import Product


@attrs.frozen
class TrialClaim:
    product_id: str
    entity_id: str | None
    #: Set only when the product's own trial is unique per fingerprint and the customer has one.
    fingerprint: str | None
    #: A ``FreeTrial`` passed to attach: granted as given, whatever is claimed (T1); its claim
    #: is inserted only if none exists, so it still uses up the product's own trial.
    explicit: bool = False


def own_trial_claim(product: Product, entity_id: str | None, fingerprint: str | None) -> TrialClaim:
    """T5: the claim of the product's own trial (also when inherited from a trialing cycle)."""
    trial = product.free_trial
    unique = trial is not None and trial.unique_fingerprint
    return TrialClaim(product.id, entity_id, fingerprint if unique else None)


def explicit_trial_claim(product: Product, entity_id: str | None) -> TrialClaim:
    """T1: the claim recorded for a ``FreeTrial`` given to attach (never per fingerprint)."""
    return TrialClaim(product.id, entity_id, None, explicit=True)


def claimed(unit: Unit, customer_pk: str, claim: TrialClaim) -> bool:
    """Whether the trial is used up (read only: planning, previews)."""
    return unit.tx.trial_claimed(claim.product_id, customer_pk, claim.entity_id, claim.fingerprint)


def claim(unit: Unit, customer_pk: str, claim: TrialClaim) -> bool:
    """Insert the claim; False (nothing inserted) when the trial was used up meanwhile."""
    return unit.tx.claim_trial(claim.product_id, customer_pk, claim.entity_id, claim.fingerprint)

"""Attach and preview_attach (docs/rules.md A1-A7, U1-U5, Q1-Q5, CO1-CO5, T1-T12, P9-P11, I1-I4).

An attach is planned first (validation, classification, trial, lines, the new customer state),
then paid for: no gateway (recorded as paid), a charge (charge, then commit), an open invoice on
an existing cycle, or a checkout that provisions nothing until the gateway reports payment.
``preview_attach`` runs the same plan and stops before anything is written or sent.

- ``args``: the arguments, their validation and their operation record;
- ``planning``: the plan of each scenario (new, add-on, one-off, upgrade, downgrade, quantity);
- ``execution``: the trial claim, the charge or the checkout, then the new state;
- ``completion``: a checkout the gateway reported paid (or failed);
- ``preview``: the plan, rolled back.
"""

from autumn_core.app.attach.args import (
    AttachArgs,
    args_from_payload,
    charge_prefixes,
    operation_payload,
    validate_attach,
)
from autumn_core.app.attach.completion import complete_pending, fail_pending
from autumn_core.app.attach.execution import CHECKOUT, attach
from autumn_core.app.attach.preview import PreviewDone, preview_body

__all__ = [
    "CHECKOUT",
    "AttachArgs",
    "PreviewDone",
    "args_from_payload",
    "attach",
    "charge_prefixes",
    "complete_pending",
    "fail_pending",
    "operation_payload",
    "preview_body",
    "validate_attach",
]

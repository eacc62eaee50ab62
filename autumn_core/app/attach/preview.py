"""``preview_attach`` (A7): the same plan, in a transaction that is always rolled back."""

from __future__ import annotations

from autumn_core.app import billing
from autumn_core.app.attach.args import AttachArgs
from autumn_core.app.attach.planning import plan_attach, ref_state
from autumn_core.app.unit import Unit
from autumn_core.results import AttachPreview


class PreviewDone(Exception):
    """Raised with the preview, so the transaction it was planned in rolls back."""

    def __init__(self, preview: AttachPreview) -> None:
        super().__init__("preview")
        self.preview = preview


def preview_body(unit: Unit, a: AttachArgs) -> AttachPreview:
    """Plan in a write transaction that is always rolled back, so auto-creation and lazy
    work are previewed too (C8) and nothing persists; the gateway is never contacted."""
    with billing.dry_run():
        state = ref_state(unit, a)
        plan = plan_attach(unit, state, a)
        # P12: the customer's credit, as the invoice would spend it (downgrades invoice nothing).
        lines = billing.with_credit(unit, state, plan.lines)
    preview = AttachPreview(
        scenario=plan.scenario,
        due_now=billing.total(lines),
        lines=list(
            billing.invoice_view(
                state, billing.new_invoice(unit, state, lines, status="open", cp_id=None)
            ).lines
        ),
        next_cycle_at=plan.next_cycle_at,
        next_cycle_total=plan.next_cycle_total,
    )
    raise PreviewDone(preview)

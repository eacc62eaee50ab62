"""Reserve, then finalize (docs/rules.md BC5, BC7), on every store."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from autumn_core import (
    Autumn,
    Catalog,
    Conflict,
    Feature,
    FreeTrial,
    InvalidRequest,
    Item,
    LockExpired,
    LockNotFound,
    ManualClock,
    Price,
    Product,
)
from autumn_core.app.holds import lock_key
from autumn_core.control_state import FEW_LOCKS, HeldKey
from autumn_core.values import arithmetic
from tests.conftest import T0, StoreFactory


def remaining(billing: Autumn, feature: str = "tokens", entity: str | None = None) -> Decimal:
    subject: Any = (
        billing.customers.get("u1") if entity is None else billing.entities.get("u1", entity)
    )
    return Decimal(subject.features[feature].remaining)


def held(billing: Autumn, feature: str = "tokens") -> Decimal:
    return Decimal(billing.customers.get("u1").features[feature].held)


def stored(billing: Autumn) -> Any:
    """The customer as the store has it (no lazy work applied: what reads have written)."""
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk("u1")
        assert pk is not None
        return tx.load_customer(pk)


def lock_status(billing: Autumn, lock_id: str) -> str:
    with billing.store.transaction(write=False) as tx:
        record = tx.get_pending(lock_key(lock_id))
    assert record is not None
    return str(record.payload["status"])


@pytest.fixture
def u1(billing: Autumn) -> Autumn:
    billing.customers.create("u1")  # free: 1000 tokens a month
    return billing


def test_bc5_a_lock_holds_the_amount_and_shows_it(u1: Autumn) -> None:
    result = u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    assert result.allowed and result.lock_id == "job-1"
    assert result.balance is not None
    assert (result.balance.remaining, result.balance.held) == (Decimal(600), Decimal(400))
    assert (remaining(u1), held(u1)) == (Decimal(600), Decimal(400))
    # and nothing else can spend it
    assert not u1.check("u1", "tokens", required_balance=601).allowed
    assert not u1.check("u1", "tokens", required_balance=601, lock={"lock_id": "job-2"}).allowed
    assert u1.events.list("u1") == []  # the usage event comes with the confirm
    assert lock_status(u1, "job-1") == "held"


def test_bc7_confirm_with_the_held_amount(u1: Autumn) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    done = u1.balances.finalize("job-1", "confirm")
    assert (done.action, done.held, done.value, done.replayed) == (
        "confirm",
        Decimal(400),
        Decimal(400),
        False,
    )
    assert (remaining(u1), held(u1)) == (Decimal(600), Decimal(0))
    [event] = u1.events.list("u1")
    assert (event.feature_id, event.value, event.properties) == (
        "tokens",
        Decimal(400),
        {"lock_id": "job-1"},
    )
    assert lock_status(u1, "job-1") == "confirmed"


@pytest.mark.parametrize(("actual", "left"), [("257.5", "742.5"), (0, 1000), (700, 300)])
def test_bc7_confirm_below_and_above_the_hold(u1: Autumn, actual: Any, left: Any) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    done = u1.balances.finalize("job-1", "confirm", override_value=actual)
    assert done.value == Decimal(str(actual))
    assert (remaining(u1), held(u1)) == (Decimal(str(left)), Decimal(0))
    assert [e.value for e in u1.events.list("u1")] == [Decimal(str(actual))]


def test_bc7_confirm_above_what_is_left_is_capped(u1: Autumn) -> None:
    # given a hold of 900 of 1000 and 50 more tracked meanwhile
    u1.check("u1", "tokens", required_balance=900, lock={"lock_id": "job-1"})
    u1.track("u1", "tokens", value=50)
    # when the work turned out to cost 2000
    u1.balances.finalize("job-1", "confirm", override_value=2000)
    # then the balance stops at zero ("reject" locks confirm as "cap")
    assert remaining(u1) == 0
    assert [e.value for e in u1.events.list("u1")] == [Decimal(50), Decimal(2000)]


def test_bc7_release_gives_back_exactly(u1: Autumn) -> None:
    u1.check("u1", "tokens", required_balance="333.25", lock={"lock_id": "job-1"})
    done = u1.balances.finalize("job-1", "release")
    assert (done.value, done.held) == (Decimal(0), Decimal("333.25"))
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))
    assert u1.events.list("u1") == []


def test_bc7_finalizing_twice_is_one_effect(u1: Autumn) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    first = u1.balances.finalize("job-1", "confirm", override_value=100)
    again = u1.balances.finalize("job-1", "confirm", override_value=100)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.value == Decimal(100)
    assert remaining(u1) == Decimal(900)
    assert len(u1.events.list("u1")) == 1
    with pytest.raises(Conflict, match="confirmed"):
        u1.balances.finalize("job-1", "release")
    assert remaining(u1) == Decimal(900)


def test_bc7_release_twice_is_one_effect(u1: Autumn) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    u1.balances.finalize("job-1", "release")
    assert u1.balances.finalize("job-1", "release").replayed
    assert remaining(u1) == Decimal(1000)


def test_bc7_unknown_lock_is_lock_not_found(u1: Autumn) -> None:
    with pytest.raises(LockNotFound, match="'nope'"):
        u1.balances.finalize("nope", "confirm")


def test_bc5_expiry_is_lazy_for_reads_and_recorded_by_process_due(
    u1: Autumn, clock: ManualClock
) -> None:
    u1.check(
        "u1",
        "tokens",
        required_balance=400,
        lock={"lock_id": "job-1", "expires_at": T0 + timedelta(minutes=5)},
    )
    clock.advance(minutes=5)
    # a read sees the hold released, and writes nothing
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))
    assert [lk.id for lk in stored(u1).control_state.locks] == ["job-1"]
    assert lock_status(u1, "job-1") == "held"
    # finalizing it now is refused, and changes nothing
    with pytest.raises(LockExpired, match="job-1"):
        u1.balances.finalize("job-1", "confirm")
    assert [lk.id for lk in stored(u1).control_state.locks] == ["job-1"]
    # process_due records the release
    assert u1.process_due() == 1
    assert stored(u1).control_state.locks == ()
    assert lock_status(u1, "job-1") == "expired"
    assert u1.process_due() == 0
    with pytest.raises(LockExpired):
        u1.balances.finalize("job-1", "release")


def test_bc5_expiry_is_recorded_by_the_next_write(u1: Autumn, clock: ManualClock) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    clock.advance(hours=23, minutes=59)
    assert held(u1) == Decimal(400)  # the default expiry is 24 hours
    clock.advance(minutes=1)
    u1.track("u1", "tokens", value=10)
    assert stored(u1).control_state.locks == ()
    assert (remaining(u1), lock_status(u1, "job-1")) == (Decimal(990), "expired")


def lock_ids(billing: Autumn) -> list[str]:
    with billing.store.transaction(write=False) as tx:
        return [r.key.removeprefix("lock:") for r in tx.list_pending("lock")]


def test_bc5_the_lock_index_forgets_locks_an_hour_past_their_expiry(
    u1: Autumn, clock: ManualClock
) -> None:
    """Given a confirmed, a released and an expired lock, and one still open, when
    process_due runs an hour past each one's expiry, then the index drops exactly those
    (settled or expired alike), finalizing one is LockNotFound, and its id can be used again."""
    # given
    for lock_id in ("done", "gone"):
        u1.check("u1", "tokens", required_balance=10, lock={"lock_id": lock_id})
    u1.balances.finalize("done", "confirm", override_value=4)
    u1.balances.finalize("gone", "release")
    u1.check(
        "u1",
        "tokens",
        required_balance=20,
        lock={"lock_id": "short", "expires_at": T0 + timedelta(minutes=30)},
    )
    # when: 30 min after "short" expired, then an hour after it expired
    clock.set(T0 + timedelta(hours=1))
    u1.process_due()
    assert lock_ids(u1) == ["done", "gone", "short"]
    clock.set(T0 + timedelta(hours=1, minutes=30))
    u1.process_due()
    # then
    assert lock_ids(u1) == ["done", "gone"]
    with pytest.raises(LockNotFound):
        u1.balances.finalize("short", "release")
    clock.set(T0 + timedelta(hours=3))
    u1.check("u1", "tokens", required_balance=30, lock={"lock_id": "open"})
    clock.set(T0 + timedelta(hours=25))
    u1.process_due()
    assert lock_ids(u1) == ["open"]
    with pytest.raises(LockNotFound):
        u1.balances.finalize("done", "confirm")
    assert (remaining(u1), held(u1)) == (Decimal(966), Decimal(30))
    again = u1.check("u1", "tokens", required_balance=5, lock={"lock_id": "done"})
    assert again.allowed and held(u1) == Decimal(35)
    u1.balances.finalize("done", "confirm")
    assert (remaining(u1), lock_status(u1, "done")) == (Decimal(961), "confirmed")


def test_bc5_settling_a_lock_does_not_move_the_customer_due_time(
    u1: Autumn, clock: ManualClock
) -> None:
    """Given a lock opened and confirmed, then the due time (the store's due index) stays at
    the first lock's expiry while locks come and go, and process_due then moves it on."""
    due_before = stored(u1).due_at
    u1.check("u1", "tokens", required_balance=10, lock={"lock_id": "a"})
    first = stored(u1).due_at
    assert first == T0 + timedelta(hours=24) and (due_before is None or first < due_before)
    u1.balances.finalize("a", "confirm")
    clock.advance(minutes=5)
    u1.check("u1", "tokens", required_balance=10, lock={"lock_id": "b"})
    u1.balances.finalize("b", "release")
    assert stored(u1).due_at == first
    clock.set(first)
    assert u1.process_due() == 1
    assert stored(u1).due_at == due_before
    assert stored(u1).control_state.lock_due is None


def test_bc5_a_row_reset_during_the_hold_keeps_its_reset_balance(
    u1: Autumn, clock: ManualClock
) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    clock.set(T0 + timedelta(days=31, hours=-1))
    u1.check("u1", "tokens", required_balance=1, lock={"lock_id": "job-2"})
    clock.set(T0 + timedelta(days=31, minutes=1))  # the monthly reset refilled to 1000
    u1.balances.finalize("job-2", "release")
    assert remaining(u1) == Decimal(1000)


def test_bc7_a_confirm_below_the_hold_after_a_reset_gives_nothing_back(
    u1: Autumn, clock: ManualClock
) -> None:
    # Given 5 held an hour before the monthly reset
    clock.set(T0 + timedelta(days=31, hours=-1))
    u1.check("u1", "tokens", required_balance=5, lock={"lock_id": "job-1"})
    # When it is confirmed at 3 after the reset refilled the row to 1000
    clock.set(T0 + timedelta(days=31, minutes=1))
    done = u1.balances.finalize("job-1", "confirm", override_value=3)
    # Then the 2 not used are not given back on top of the reset (they were of the old period)
    assert (done.held, done.value) == (Decimal(5), Decimal(3))
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))


@pytest.mark.parametrize(("actual", "left"), [(3, 1000), (5, 1000), (8, 997)])
def test_bc7_a_hold_taken_before_a_reset_is_spent_in_the_old_period(
    u1: Autumn, clock: ManualClock, actual: int, left: int
) -> None:
    # Given 5 held an hour before the monthly reset
    clock.set(T0 + timedelta(days=31, hours=-1))
    u1.check("u1", "tokens", required_balance=5, lock={"lock_id": "job-1"})
    # When the reset has refilled the row to 1000
    clock.set(T0 + timedelta(days=31, minutes=1))
    # Then nothing of the new period is held: all of it can be spent
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))
    assert u1.check("u1", "tokens", required_balance=1000).allowed
    # and a confirm charges the new period only what goes beyond the hold
    done = u1.balances.finalize("job-1", "confirm", override_value=actual)
    assert (done.held, done.value) == (Decimal(5), Decimal(actual))
    assert (remaining(u1), held(u1)) == (Decimal(left), Decimal(0))
    assert [e.value for e in u1.events.list("u1")] == [Decimal(actual)]


def test_bc5_many_holds_across_a_reset_hold_only_what_the_new_period_gave(
    u1: Autumn, clock: ManualClock
) -> None:
    # Given more holds than are summed afresh (their totals are kept), all before the reset
    clock.set(T0 + timedelta(days=31, hours=-1))
    for n in range(FEW_LOCKS + 1):
        u1.check("u1", "tokens", required_balance=10, lock={"lock_id": f"old-{n}"})
    assert (remaining(u1), held(u1)) == (Decimal(910), Decimal(90))
    # When a hold is taken after the reset
    clock.set(T0 + timedelta(days=31, minutes=1))
    u1.check("u1", "tokens", required_balance=7, lock={"lock_id": "new"})
    # Then only it is held, and what is left and held never exceed the grant
    assert (remaining(u1), held(u1)) == (Decimal(993), Decimal(7))
    assert not u1.check("u1", "tokens", required_balance=994).allowed
    # and releasing the old holds gives nothing to the new period
    for n in range(FEW_LOCKS + 1):
        u1.balances.finalize(f"old-{n}", "release")
    assert (remaining(u1), held(u1)) == (Decimal(993), Decimal(7))


def test_bc5_reject_cap_and_overflow(u1: Autumn) -> None:
    u1.track("u1", "tokens", value=900)
    no = u1.check("u1", "tokens", required_balance=200, lock={"lock_id": "a"})
    assert not no.allowed and no.lock_id is None and remaining(u1) == Decimal(100)
    with pytest.raises(LockNotFound):
        u1.balances.finalize("a", "release")
    capped = u1.check(
        "u1", "tokens", required_balance=200, lock={"lock_id": "b", "overage_behavior": "cap"}
    )
    assert capped.allowed and (remaining(u1), held(u1)) == (Decimal(0), Decimal(100))
    u1.balances.finalize("b", "release")
    over = u1.check(
        "u1", "tokens", required_balance=200, lock={"lock_id": "c", "overage_behavior": "overflow"}
    )
    assert over.allowed and held(u1) == Decimal(200)
    assert u1.customers.get("u1").features["tokens"].usage == Decimal(1100)


def test_bc5_the_same_lock_checked_again_holds_once(u1: Autumn) -> None:
    u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    again = u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})
    assert again.allowed and held(u1) == Decimal(400)
    with pytest.raises(Conflict, match="job-1"):
        u1.check("u1", "tokens", required_balance=5, lock={"lock_id": "job-1"})
    u1.balances.finalize("job-1", "release")
    with pytest.raises(Conflict, match="job-1"):
        u1.check("u1", "tokens", required_balance=400, lock={"lock_id": "job-1"})


def test_bc5_a_generated_lock_id(u1: Autumn) -> None:
    result = u1.check("u1", "tokens", required_balance=1, lock={"enabled": True})
    assert result.lock_id is not None and result.lock_id.startswith("lck_")
    assert u1.balances.finalize(result.lock_id, "confirm").value == 1


def test_bc5_locks_on_an_entity(u1: Autumn) -> None:
    u1.entities.create("u1", "seat-1", "seats")
    r = u1.check("u1", "tokens", required_balance=10, entity_id="seat-1", lock={"lock_id": "e"})
    assert r.allowed and r.entity_id == "seat-1"
    assert u1.entities.get("u1", "seat-1").features["tokens"].held == Decimal(10)
    assert held(u1) == Decimal(10)  # it holds customer-level rows: the customer sees it too
    assert u1.balances.finalize("e", "confirm", override_value=4).entity_id == "seat-1"
    assert remaining(u1) == Decimal(996)


BAD_LOCKS: list[tuple[Any, str]] = [
    ({"lock_id": ""}, "lock_id"),
    ({"lock_id": "x" * 257}, "lock_id"),
    ({"lock_id": 5}, "lock_id"),
    ({"lock_id": "a", "expires_at": T0 + timedelta(hours=24, seconds=1)}, "24 hours"),
    ({"lock_id": "a", "expires_at": T0}, "after now"),
    ({"lock_id": "a", "overage_behavior": "maybe"}, "maybe"),
    ({"lock_id": "a", "colour": 1}, "colour"),
    ("a", "dict"),
]


@pytest.mark.parametrize(("lock", "named"), BAD_LOCKS)
def test_bc5_bad_locks_change_nothing(u1: Autumn, lock: Any, named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        u1.check("u1", "tokens", required_balance=10, lock=lock)
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("a", "cancel"), "action"),
        (("", "confirm"), "lock_id"),
        (("a", "release", {"override_value": 5}), "override_value"),
        (("a", "confirm", {"override_value": -1}), "override_value"),
    ],
)
def test_bc7_bad_finalize_arguments(u1: Autumn, args: Any, named: str) -> None:
    kwargs = args[2] if len(args) == 3 else {}
    with pytest.raises(InvalidRequest, match=named):
        u1.balances.finalize(args[0], args[1], **kwargs)


def test_bc5_deleting_an_entity_gives_its_holds_back(u1: Autumn) -> None:
    u1.entities.create("u1", "seat-1", "seats")
    u1.check("u1", "tokens", required_balance=10, entity_id="seat-1", lock={"lock_id": "e"})
    u1.entities.delete("u1", "seat-1")
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))
    # and the lock answers as released: a confirm is refused, a release is one effect
    assert lock_status(u1, "e") == "released"
    with pytest.raises(Conflict, match="already released"):
        u1.balances.finalize("e", "confirm")
    assert u1.balances.finalize("e", "release").replayed
    assert (remaining(u1), held(u1)) == (Decimal(1000), Decimal(0))


def test_bc5_deleting_a_customer_forgets_its_locks(u1: Autumn) -> None:
    # Given an open lock and a confirmed one
    u1.check("u1", "tokens", required_balance=10, lock={"lock_id": "open"})
    u1.check("u1", "tokens", required_balance=10, lock={"lock_id": "done"})
    u1.balances.finalize("done", "confirm")
    # When the customer is deleted
    u1.customers.delete("u1")
    # Then neither lock can be finalized, and the open one's id is free again
    for lock_id in ("open", "done"):
        with pytest.raises(LockNotFound, match=lock_id):
            u1.balances.finalize(lock_id, "release")
    u1.customers.create("u1")
    assert u1.check("u1", "tokens", required_balance=10, lock={"lock_id": "open"}).allowed
    assert (remaining(u1), held(u1)) == (Decimal(990), Decimal(10))


def test_bc5_many_locks_open_at_once_hold_and_settle_exactly(u1: Autumn) -> None:
    """Given 20 locks of 10 tokens open at once (more than a customer's few, which are summed
    afresh on every read), then what they hold is exact after each open and settle, in reads and
    in what each check returns, and the stored customer holds the same."""
    for n in range(20):
        result = u1.check("u1", "tokens", required_balance=10, lock={"lock_id": f"job-{n}"})
        assert result.balance is not None
        assert (result.balance.held, result.balance.remaining) == (
            Decimal(10 * (n + 1)),
            Decimal(1000 - 10 * (n + 1)),
        )
    assert (remaining(u1), held(u1)) == (Decimal(800), Decimal(200))
    # and two on another feature, held apart
    for n in range(2):
        u1.check("u1", "messages", required_balance=3, lock={"lock_id": f"chat-{n}"})
    assert (remaining(u1), held(u1), held(u1, "messages")) == (
        Decimal(800),
        Decimal(200),
        Decimal(6),
    )
    # when 7 are confirmed at 5.5 each (4.5 of each given back) and 3 released
    for n in range(7):
        u1.balances.finalize(f"job-{n}", "confirm", override_value="5.5")
    for n in range(7, 10):
        u1.balances.finalize(f"job-{n}", "release")
    # then 10 locks hold 100, and 38.5 was used
    assert (remaining(u1), held(u1)) == (Decimal("861.5"), Decimal(100))
    assert u1.check("u1", "tokens", required_balance="861.5").allowed
    assert not u1.check("u1", "tokens", required_balance="861.6").allowed
    state = stored(u1)
    assert sorted(lk.id for lk in state.control_state.locks) == sorted(
        [*(f"job-{n}" for n in range(10, 20)), "chat-0", "chat-1"]
    )
    [tokens] = [(r.id, r.next_reset_at) for r in state.rows if r.feature_id == "tokens"]
    [messages] = [(r.id, r.next_reset_at) for r in state.rows if r.feature_id == "messages"]
    assert state.control_state.held() == {
        (tokens[0], "tokens", tokens[1]): Decimal(100),
        (messages[0], "messages", messages[1]): Decimal(6),
    }
    # and a track beside them leaves the held amount as it is
    u1.track("u1", "tokens", value="1.5")
    assert (remaining(u1), held(u1)) == (Decimal(860), Decimal(100))


def test_bc5_many_locks_are_held_where_they_draw_entities_and_credits(
    clock: ManualClock, new_store: Any
) -> None:
    """Given per-seat tokens and a credit pool, and 15 locks open at once (6 on seat-1's
    tokens, 4 on seat-2's, 5 on images drawn from credits), then each subject shows held only
    what was taken from rows it sees, and credits show the images' holds, exactly; after some
    settle, the same."""
    catalog = Catalog(
        features=[
            Feature.allocated("seats"),
            Feature.metered("tokens"),
            Feature.metered("images"),
            Feature.credit_system("credits", costs={"images": 2}),
        ],
        products=[
            Product(
                "team",
                default=True,
                items=[
                    Item.feature("seats", included=10),
                    Item.feature("tokens", included=100, reset="month", per_entity="seats"),
                    Item.feature("credits", included=1000, reset="month"),
                ],
            )
        ],
    )
    billing = Autumn(catalog, store=new_store(), clock=clock)
    billing.customers.create("u1")
    for seat in ("seat-1", "seat-2"):
        billing.entities.create("u1", seat, "seats")
    for n in range(6):
        billing.check(
            "u1", "tokens", required_balance=5, entity_id="seat-1", lock={"lock_id": f"a{n}"}
        )
    for n in range(4):
        billing.check(
            "u1", "tokens", required_balance=5, entity_id="seat-2", lock={"lock_id": f"b{n}"}
        )
    for n in range(5):
        billing.check("u1", "images", required_balance=3, lock={"lock_id": f"img{n}"})

    def shown(entity: str | None, feature: str) -> tuple[Decimal, Decimal]:
        subject: Any = (
            billing.customers.get("u1") if entity is None else billing.entities.get("u1", entity)
        )
        balance = subject.features[feature]
        return Decimal(balance.held), Decimal(balance.remaining)

    assert shown("seat-1", "tokens") == (Decimal(30), Decimal(70))
    assert shown("seat-2", "tokens") == (Decimal(20), Decimal(80))
    assert shown(None, "tokens") == (Decimal(50), Decimal(150))
    assert shown(None, "credits") == (Decimal(30), Decimal(970))
    # when half settle: seat-1's first three confirmed at 1, one image released
    for n in range(3):
        billing.balances.finalize(f"a{n}", "confirm", override_value=1)
    billing.balances.finalize("img0", "release")
    assert shown("seat-1", "tokens") == (Decimal(15), Decimal(82))
    assert shown("seat-2", "tokens") == (Decimal(20), Decimal(80))
    assert shown(None, "tokens") == (Decimal(35), Decimal(162))
    assert shown(None, "credits") == (Decimal(24), Decimal(976))


def test_bc5_many_locks_beside_holds_of_sixty_digits(clock: ManualClock, new_store: Any) -> None:
    """Given holds whose takes have the engine's full precision (images drawn from credits at
    a third of a credit each, overflowing), and then more locks than a customer's few, then
    every lock opens, and what is held is the plain sum of the takes, spelled as it sums."""
    catalog = Catalog(
        features=[
            Feature.metered("images"),
            Feature.metered("tokens"),
            Feature.credit_system("credits", costs={"images": 3}),
        ],
        products=[
            Product(
                "free",
                default=True,
                items=[
                    Item.feature("images", included=1, reset="month"),
                    Item.feature("tokens", included=1000, reset="month"),
                    Item.feature("credits", included=1, reset="month"),
                ],
            )
        ],
    )
    billing = Autumn(catalog, store=new_store(), clock=clock)
    billing.customers.create("u1")
    for lock_id, amount in (("i1", 2), ("i2", 100)):
        overflow = {"lock_id": lock_id, "overage_behavior": "overflow"}
        assert billing.check("u1", "images", required_balance=amount, lock=overflow).allowed
    for n in range(8):
        assert billing.check("u1", "tokens", required_balance=1, lock={"lock_id": f"t{n}"}).allowed
    assert Decimal(billing.customers.get("u1").features["tokens"].held) == Decimal(8)
    with billing.store.transaction(write=False) as tx:
        pk = tx.customer_pk("u1")
        assert pk is not None
        state = tx.load_customer(pk)
    assert state is not None
    plain: dict[HeldKey, Decimal] = {}
    with arithmetic():  # the engine's precision
        for lk in state.control_state.locks:
            for t in lk.takes:
                key = (t.row_id, t.feature_id, t.period)
                plain[key] = plain.get(key, Decimal(0)) + t.total
    kept = state.control_state.held()
    assert {k: str(v) for k, v in kept.items()} == {k: str(v) for k, v in plain.items() if v}


def test_bc5_a_hold_across_a_trial_conversion_stays_held(
    clock: ManualClock, new_store: StoreFactory
) -> None:
    # Given a 14-day trial whose end moves the row's next reset without resetting it
    catalog = Catalog(
        features=[Feature.metered("api_calls")],
        products=[
            Product(
                "pro",
                price=Price(20, interval="month"),
                free_trial=FreeTrial(14, card_required=False),
                items=[Item.priced("api_calls", included=100, price="0.01", billing="usage")],
            )
        ],
    )
    billing = Autumn(catalog, store=new_store(), clock=clock)
    billing.customers.create("u1")
    billing.attach("u1", "pro")
    # and 30 held an hour before the trial ends
    clock.set(T0 + timedelta(days=14, hours=-1))
    billing.check("u1", "api_calls", required_balance=30, lock={"lock_id": "a"})
    # When the trial has converted
    clock.set(T0 + timedelta(days=14, hours=1))
    # Then the 30 are still held, and a release gives them back
    assert (remaining(billing, "api_calls"), held(billing, "api_calls")) == (
        Decimal(70),
        Decimal(30),
    )
    billing.balances.finalize("a", "release")
    assert (remaining(billing, "api_calls"), held(billing, "api_calls")) == (
        Decimal(100),
        Decimal(0),
    )


def test_bc5_a_hold_that_expired_before_a_renewal_is_neither_billed_nor_lost(
    billing: Autumn, clock: ManualClock
) -> None:
    # Given payg (100 api_calls a month, then 0.01 each) and 150 held under cap two hours
    # before the period ends, for 30 minutes
    billing.customers.create("u1")
    billing.attach("u1", "payg")
    clock.set(T0 + timedelta(days=31, hours=-2))
    _hold_150_for_30_minutes(billing, clock)
    # When nothing writes to the customer until an hour after the renewal
    clock.set(T0 + timedelta(days=31, hours=1))
    billing.track("u1", "api_calls", value=0)
    # Then the renewal billed no usage and the new period is whole
    assert [i.total for i in billing.invoices.list("u1") if i.total] == []
    assert (remaining(billing, "api_calls"), held(billing, "api_calls")) == (
        Decimal(100),
        Decimal(0),
    )
    with pytest.raises(LockExpired):
        billing.balances.finalize("a", "confirm")


def _hold_over_two_periods(billing: Autumn, clock: ManualClock) -> None:
    """payg (100 api_calls a month, then 0.01 each; its period ends at T0 + 31 days, 09:00),
    a grant of 10 api_calls resetting hourly at :30 (drawn first), and 150 held under cap at
    08:15 for 30 minutes: 10 of the grant (its period ends 08:30), 140 of payg (09:00)."""
    billing.customers.create("u1")
    billing.attach("u1", "payg")
    clock.set(T0 + timedelta(days=31, hours=-3, minutes=-30))
    billing.balances.grant("u1", "api_calls", 10, reset="hour")
    clock.set(T0 + timedelta(days=31, minutes=-45))
    _hold_150_for_30_minutes(billing, clock)


def _hold_150_for_30_minutes(billing: Autumn, clock: ManualClock) -> None:
    billing.check(
        "u1",
        "api_calls",
        required_balance=150,
        lock={
            "lock_id": "a",
            "overage_behavior": "cap",
            "expires_at": clock.now() + timedelta(minutes=30),
        },
    )


@pytest.mark.parametrize("first_write", [None, timedelta(minutes=-20), timedelta(minutes=-10)])
def test_bc5_a_lock_over_rows_of_two_periods_expired_before_a_renewal_is_not_billed(
    billing: Autumn, clock: ManualClock, first_write: timedelta | None
) -> None:
    # Given a hold over two rows of different periods, expiring at 08:45
    _hold_over_two_periods(billing, clock)
    # When the customer is next written at 08:40 (the grant's reset), 08:50, or only after
    # the renewal
    if first_write is not None:
        clock.set(T0 + timedelta(days=31) + first_write)
        billing.track("u1", "messages", value=0)
    clock.set(T0 + timedelta(days=31, hours=1))
    billing.track("u1", "api_calls", value=0)
    # Then, whenever the lazy work ran, the renewal billed no usage for the expired hold
    assert [i.total for i in billing.invoices.list("u1") if i.total] == []


def test_bc7_a_confirm_below_counts_the_spent_takes_as_used_first(
    u1: Autumn, clock: ManualClock
) -> None:
    # Given a yearly grant of 100 tokens made a day after the plan's monthly 1000 (so it
    # resets on March 11th, the plan on the 10th)
    clock.set(T0 + timedelta(days=1))
    u1.balances.grant("u1", "tokens", 100, reset="year")
    # and, a year on, the plan's tokens down to 5 and 20 held: 5 of the plan's row, then 15
    # of the grant (drawn last: the longer interval)
    year = T0.replace(year=T0.year + 1) + timedelta(days=1)
    clock.set(year - timedelta(hours=2))
    u1.track("u1", "tokens", value=995)
    u1.check("u1", "tokens", required_balance=20, lock={"lock_id": "a"})
    assert (remaining(u1), held(u1)) == (Decimal(85), Decimal(20))
    # When the grant has reset and the hold is confirmed at 4
    clock.set(year + timedelta(minutes=1))
    u1.balances.finalize("a", "confirm", override_value=4)
    # Then the 4 were used of the grant's old period; the plan's 5 come back
    assert (remaining(u1), held(u1)) == (Decimal(105), Decimal(0))

"""Posted events: each one kept or named with its reason by the data contract, and the journal that keeps them
(whole lines only, followed across a seal)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.common.home import StateHome
from features.dataset.events import Journal, check_events, event_key, read_entries


def events(*rows: dict) -> dict[str, list[dict]]:
    """Orders as the service appends them: checked, in their JSON form."""
    return check_events({"orders": list(rows)}).rows


def test_the_journal_keeps_whole_lines_and_follows_a_seal(tmp_path: Path) -> None:
    journal = Journal(StateHome(tmp_path), "shop")
    first = journal.append(events({"member_id": "m", "ts": "2026-04-02", "amount": 5}))
    entries, position = journal.read_since((0, 0))
    assert entries == first and first[0]["key"] == event_key("orders", first[0]["row"])
    with journal.current.open("a") as handle:  # a line being written when a reader looks
        handle.write('{"table": "orders", "key"')
    assert journal.read_since(position) == ([], position)
    journal.current.write_text(journal.current.read_text().rsplit("\n", 1)[0] + "\n")  # the writer died there
    journal.seal()
    second = journal.append(events({"member_id": "n", "ts": "2026-04-03", "amount": 6}))
    assert journal.read_since(position)[0] == second
    pending, after = journal.pending()
    assert [e["row"]["member_id"] for e in pending] == ["m", "n"] and journal.read_since(after) == ([], after)
    assert read_entries(journal.segments()[0]) == first


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["2026-04-02T10:00", "17850.0", "read", "-3.5", "yes", ""]),
)
EVENT = st.dictionaries(
    st.one_of(
        st.sampled_from(["member_id", "ts", "amount", "order_id", "action", "content_id", "is_return"]),
        st.text(max_size=6),
    ),
    VALUES,
    max_size=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.fixed_dictionaries({"orders": st.lists(EVENT, max_size=4), "engagements": st.lists(EVENT, max_size=4)}))
def test_every_posted_event_is_either_kept_or_named_with_its_reason(batch: dict) -> None:
    checked = check_events(batch)
    named = {(r["table"], r["index"]) for r in checked.rejected}
    assert checked.accepted + len(checked.rejected) == len(batch["orders"]) + len(batch["engagements"])
    assert len(named) == len(checked.rejected) and all(r["reason"] for r in checked.rejected)


def test_an_event_the_log_holds_twice_is_stored_and_counted_once(tmp_path: Path) -> None:
    from features.dataset.event_log import ingest
    from features.dataset.store import Dataset

    # given: one order posted to a replica killed before it answered, then again to another: two entries
    dataset = Dataset(StateHome(tmp_path), "shop")
    journal = Journal(dataset.home, "shop")
    order = {"member_id": "m", "ts": "2026-04-02", "amount": 5, "order_id": "W-1"}
    journal.append(events(order))
    journal.append(events(order, {**order, "order_id": "W-2"}))
    # when: ingested; then: each order once in the table and in the count
    summary = ingest(dataset)
    assert summary.events["orders"] == 3 and summary.added["orders"] == 2
    assert sorted(dataset.read("orders")["order_id"]) == ["W-1", "W-2"]

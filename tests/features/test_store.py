"""One process of the host at a time: the lock the events journal, the service's scorer and its online layout share."""

from __future__ import annotations

import threading
from pathlib import Path

from features.dataset.store import exclusively, made_once


def test_one_process_at_a_time_holds_a_lock_and_the_next_waits_for_it(tmp_path: Path) -> None:
    # (Two opens of the lock file contend as two processes do: flock locks belong to the open file.)
    lock, order = tmp_path / "nested" / ".lock", []
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with exclusively(lock):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        with exclusively(lock):
            order.append("second in")

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and order == ["first in"]  # waiting for the lock
    release.set()
    holder.join(10)
    waiter.join(10)
    assert order == ["first in", "first out", "second in"]


def test_what_several_workers_would_make_at_once_is_made_once_and_the_others_find_it(tmp_path: Path) -> None:
    target, lock, made = tmp_path / "online" / "layout.json", tmp_path / ".online.lock", []
    inside, release = threading.Event(), threading.Event()

    def make() -> None:
        made.append(threading.get_ident())
        inside.set()
        release.wait(10)
        target.parent.mkdir(exist_ok=True)
        target.write_text("{}")

    # given: one worker making it
    first = threading.Thread(target=made_once, args=(target, make), kwargs={"lock": lock})
    first.start()
    assert inside.wait(10)
    # when: a second asks for it meanwhile
    second = threading.Thread(target=made_once, args=(target, make), kwargs={"lock": lock})
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first
    release.set()
    first.join(10)
    second.join(10)
    # then: made once, and found made by the second and by any later one
    assert len(made) == 1 and target.read_text() == "{}" and not second.is_alive()
    made_once(target, make, lock=lock)
    assert len(made) == 1

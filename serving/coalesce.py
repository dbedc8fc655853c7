"""Request coalescing: the small requests that arrive together are answered by one call.

Scoring members has a fixed cost per call (a LightGBM call, the model inputs, the reasons: a few hundred
microseconds each) and a small one per member, so eight members at once cost little more than one. A request
never waits for others: its call runs as soon as the event loop is free, with every request that arrived by then
(under load, the ones the loop read while the previous call ran). The same idea as BentoML's adaptive batching
or Triton's dynamic batching, for endpoints whose requests already carry lists of members.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)
Shared = TypeVar("Shared")


class Coalescer(Generic[Key, Shared]):
    """`answer(key, member_ids)` answers the members of every request with the same key at once: it returns what
    they all share (the serving state they were answered from) and one answer per member, in order.

    A member's answer takes about a millisecond: a request of up to `inline` members is answered on the event
    loop, which costs less than a hop to the thread pool and back; a larger one would hold the loop, so it is
    answered alone, in a thread."""

    def __init__(self, answer: Callable[[Key, list[str]], tuple[Shared, list[Any]]], inline: int = 10) -> None:
        self._answer = answer
        self._inline = inline
        self._pending: dict[Key, list[tuple[list[str], asyncio.Future[tuple[Shared, list[Any]]]]]] = {}
        self._scheduled = False

    async def __call__(self, key: Key, member_ids: list[str]) -> tuple[Shared, list[Any]]:
        if len(member_ids) > self._inline:
            return await asyncio.to_thread(self._answer, key, member_ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Shared, list[Any]]] = loop.create_future()
        self._pending.setdefault(key, []).append((member_ids, future))
        if not self._scheduled:  # after the requests the loop has ready now, not later
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending, self._scheduled = self._pending, {}, False
        for key, requests in pending.items():
            try:
                shared, answers = self._answer(key, [m for member_ids, _ in requests for m in member_ids])
            except Exception as exc:  # every request of the call gets the error its own call would have raised
                for _, future in requests:
                    if not future.done():
                        future.set_exception(exc)
                continue
            at = 0
            for member_ids, future in requests:
                if not future.done():  # a client that went away
                    future.set_result((shared, answers[at : at + len(member_ids)]))
                at += len(member_ids)

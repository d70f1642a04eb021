"""Concurrent calls: the per-call token and the holds on model parts shared by concurrent calls.

:func:`call_token` marks one adapter call's work in its thread (or task), so
that framework hooks (:func:`current_call`) act only on their own call's
forward pass. :class:`Holds` reference-counts the calls in flight on each part
of a model: the first call of a kind saves the state it changes, the last one
restores it, and calls of conflicting kinds wait for each other.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: The token of the adapter call running in this thread (or task), if any.
_CURRENT_CALL: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "saliencykit_adapter_call", default=None
)


def current_call() -> object | None:
    """The token of the adapter call running in this thread (or task); None outside any."""
    return _CURRENT_CALL.get()


@contextlib.contextmanager
def call_token() -> Iterator[object]:
    """A fresh token marking this thread's work during the block as one adapter call's."""
    token = object()
    reset = _CURRENT_CALL.set(token)
    try:
        yield token
    finally:
        _CURRENT_CALL.reset(reset)


@dataclass(slots=True)
class _Hold:
    """The calls in flight that hold one part, by kind (no zero counts), and what each kind saved."""

    users: dict[Any, int] = field(default_factory=dict)
    saved: dict[Any, Any] = field(default_factory=dict)


class Holds:
    """Reference-counted holds of concurrent adapter calls on the parts of models.

    A part (a submodule, a layer) is held by every call in flight on it, each
    of one *kind* (say eval mode, or train mode). The first call of a kind
    saves the part's state (``save``) and the last one of that kind restores it
    (``restore``), so concurrent calls of one kind run in parallel and the
    part comes back exactly as it was. A call waits while another kind holds
    any of its parts, unless its thread is already inside an adapter call
    (:func:`current_call`), which would wait for itself. Framework-neutral:
    the framework says what the parts are and how to save and restore them.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._holds: weakref.WeakKeyDictionary[Any, _Hold] = weakref.WeakKeyDictionary()

    def users(self, part: Any) -> int:
        """How many calls hold ``part`` now (a snapshot, read without the lock)."""
        hold = self._holds.get(part)
        return 0 if hold is None else sum(hold.users.values())

    @contextlib.contextmanager
    def hold(
        self,
        parts: Iterable[Any] | Callable[[], Iterable[Any]],
        kind: Any,
        save: Callable[[Any], Any] | None = None,
        restore: Callable[[Any, Any], None] | None = None,
        then: Callable[[list[Any]], None] | None = None,
    ) -> Iterator[list[Any]]:
        """Holds ``parts`` with ``kind`` for the block; yields the parts held.

        Args:
          parts: the parts, or a function listing them (called with the lock
            held, so it may look at :meth:`users`).
          kind: the kind of hold; holds of different kinds exclude each other.
          save: ``save(part) -> state``, run by the first call of ``kind``.
          restore: ``restore(part, state)``, run by the last call of ``kind``.
          then: run once with the parts after they are held (e.g. switch the
            model to eval mode); if it or a ``save`` raises, the parts joined
            so far are released (and restored) before the error propagates.
        """
        with self._condition:
            held = list(parts() if callable(parts) else parts)
            if current_call() is None:
                self._condition.wait_for(lambda: not any(self._held_otherwise(part, kind) for part in held))
            joined: list[Any] = []
            try:
                for part in held:
                    self._join(part, kind, save)
                    joined.append(part)
                if then is not None:
                    then(held)
            except BaseException:
                self._release(joined, kind, restore)
                raise
        try:
            yield held
        finally:
            with self._condition:
                self._release(held, kind, restore)

    def _held_otherwise(self, part: Any, kind: Any) -> bool:
        hold = self._holds.get(part)
        return hold is not None and any(other != kind for other in hold.users)

    def _join(self, part: Any, kind: Any, save: Callable[[Any], Any] | None) -> None:
        """Adds one user of ``kind`` to ``part``, saving its state first if it is the first (lock held)."""
        hold = self._holds.get(part)
        known = hold is not None
        if hold is None:
            hold = _Hold()
        count = hold.users.get(kind, 0)
        if not count:
            hold.saved[kind] = save(part) if save is not None else None
        hold.users[kind] = count + 1
        if not known:
            self._holds[part] = hold

    def _release(self, parts: list[Any], kind: Any, restore: Callable[[Any, Any], None] | None) -> None:
        """Ends one call's hold on ``parts``, restoring those it was the last of its kind on (lock held)."""
        for part in parts:
            hold = self._holds.get(part)
            count = 0 if hold is None else hold.users.get(kind, 0)
            if hold is None or count == 0:
                continue
            if count > 1:
                hold.users[kind] = count - 1
                continue
            del hold.users[kind]
            state = hold.saved.pop(kind, None)
            if restore is not None:
                restore(part, state)
            if not hold.users:
                del self._holds[part]
        self._condition.notify_all()

"""An epoch number shared with DataLoader worker processes.

``DataLoader(persistent_workers=True)`` keeps its worker processes, and the
copy of the dataset each one received when it started, from one epoch to the
next: an epoch stored as a plain attribute and changed by ``set_epoch`` in the
main process would never reach them, and every epoch would draw epoch 0's
frames. :class:`SharedEpoch` keeps the number in a few bytes of shared memory
instead, so a worker forked or spawned from the process that owns it reads
the value the main process set last, each time it loads an item.

Pickled for anything but starting a process (``copy.deepcopy``, a queue, a
file), it travels as a plain number and the copy gets shared memory of its
own: a copy is independent of the original.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.context
from typing import Any

__all__ = ["SharedEpoch"]

log = logging.getLogger(__name__)


def _new_shared(value: int) -> Any:
    """A signed 64-bit integer in shared memory, or None where none can be had."""
    try:
        return multiprocessing.RawValue("q", value)  # aligned 8-byte loads/stores: no lock needed
    except (OSError, ValueError) as e:  # no writable shared memory (tiny /dev/shm, sandbox)
        log.warning(
            "no shared memory for the dataset epoch (%s): set_epoch() will not reach DataLoader workers "
            "started with persistent_workers=True",
            e,
        )
        return None


class SharedEpoch:
    """An epoch number readable by worker processes started after it was made.

    Args:
        value: the initial epoch.
    """

    def __init__(self, value: int = 0) -> None:
        self._value = int(value)
        self._shared = _new_shared(self._value)

    @property
    def is_shared(self) -> bool:
        """Whether worker processes see :meth:`set`; False only where shared memory was refused."""
        return self._shared is not None

    def get(self) -> int:
        """The epoch set last, by this process or (shared) any process using the same memory."""
        return int(self._shared.value) if self._shared is not None else self._value

    def set(self, value: int) -> None:
        """Set the epoch for this process and every worker sharing the memory."""
        self._value = int(value)
        if self._shared is not None:
            self._shared.value = self._value

    def __getstate__(self) -> dict[str, Any]:
        # Shared memory can only be handed to a process being started (fork, spawn,
        # forkserver); any other pickle carries the number alone.
        spawning = multiprocessing.context.get_spawning_popen() is not None
        return {"value": self.get(), "shared": self._shared if spawning else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._value = int(state["value"])
        self._shared = state["shared"] if state["shared"] is not None else _new_shared(self._value)

    def __repr__(self) -> str:
        return f"SharedEpoch({self.get()}{'' if self.is_shared else ', process-local'})"

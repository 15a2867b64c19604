"""Work on a thread of its own whose result the caller collects later: the
halves of paskdnn.load that overlap (the device context, a bundle's checks)."""
from __future__ import annotations

import threading
from typing import Any, Callable


class Background:
    """fn() on a daemon thread named name, started now. result() waits for it
    and returns its value, or raises what it raised (on the caller's thread);
    wait() only waits (after a failure elsewhere, whatever this one did)."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self._out: dict = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread by result()
            self._out["error"] = e

    def result(self) -> Any:
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out.get("value")

    def wait(self) -> None:
        self._thread.join()

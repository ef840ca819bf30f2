"""Shared by the Pilot tests: wait, without blocking the app, for a condition to hold."""
import time


async def wait_for(pilot, cond, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `cond` between short pauses until it is true. A condition that raises (the
    screen not switched yet, a widget not mounted yet) counts as not yet true; if it still
    raises at the timeout, that error is the cause of the failure."""
    end = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < end:
        try:
            if cond():
                return
            error = None
        except Exception as e:  # noqa: BLE001  (reported below if it never clears)
            error = e
        await pilot.pause(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s"
                         + (f" (the condition raised {error!r})" if error is not None else "")) from error


async def wait_for_screen(pilot, name: str, timeout: float = 20.0) -> None:
    """Wait until the app shows the screen class `name` (a mode switch or a push completes
    after the key that asked for it)."""
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == name, timeout, f"the {name} screen")

"""Shared by the Pilot tests: wait, without blocking the app, for a condition to hold."""
import time


async def wait_for(pilot, cond, timeout: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")

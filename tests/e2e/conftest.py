"""Fixtures shared by the end-to-end tests."""
from __future__ import annotations

import pytest

from .client import Session


@pytest.fixture
async def sessions(stack):
    """Open devices (``await sessions(email)``); all are closed after the test."""
    opened: list[Session] = []

    async def open_(email: str) -> Session:
        s = await Session.open(stack, email)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        await s.close()

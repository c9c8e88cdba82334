"""The bare endpoint `omi-rules bench` compares the receiver with: the same framework and
server (Litestar under one uvicorn worker), decoding the body with msgspec and nothing else.

    python -m uvicorn engine.bench_bare:app --port 8001 --no-access-log
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, post


@post("/webhook/memory", status_code=200)
async def memory(request: Request[Any, Any, Any]) -> dict[str, Any]:
    msgspec.json.decode(await request.body())
    return {}


app = Litestar([memory])

"""``python -m ecg_gateway [uvicorn options]``: the gateway under uvicorn, closing connections whose request head or
body is too slow to arrive (:mod:`ecg_shared.http_server`). The options are uvicorn's (``--host``, ``--port``,
``--workers``, ...)."""

from __future__ import annotations

import sys

from ecg_shared.http_server import serve


def main(argv: list[str] | None = None) -> None:
    serve("ecg_gateway.app:app", list(sys.argv[1:] if argv is None else argv), prog_name="python -m ecg_gateway")


if __name__ == "__main__":
    main()

"""The web viewer: a read-only browser of a store (``everstore serve PATH|URL``).

Needs the ``web`` extra (Starlette and uvicorn); ``import everstore`` never imports it.
Everything the pages use ships in this package (``static/``); nothing is fetched from
the internet. See docs/inspector.md.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app", "serve"]


def serve(target: str, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Open the store at ``target`` and serve the web viewer on ``host:port`` until
    interrupted (Ctrl-C), then close the store.

    :param target: a path or URL, as :func:`everstore.open` takes it
    :param port: the TCP port to listen on
    :param host: the address to listen on (the loopback interface by default: the
        viewer has no authentication)
    :raises ValueError: for an unknown URL scheme (from :func:`everstore.open`)
    """
    import uvicorn

    from .. import open as open_store

    store = open_store(target)
    try:
        uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
    finally:
        store.close()

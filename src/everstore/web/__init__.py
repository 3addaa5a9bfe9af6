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

    Prints the viewer's address once it accepts connections (with the port the system
    chose when ``port`` is 0).

    :param target: a path or URL, as :func:`everstore.open` takes it
    :param port: the TCP port to listen on (0: any free one)
    :param host: the address to listen on (the loopback interface by default: the
        viewer has no authentication)
    :raises ValueError: for an unknown URL scheme (from :func:`everstore.open`)
    :raises OSError: if the address cannot be listened on (the port is taken, say)
    """
    import socket

    import uvicorn

    from .. import open as open_store

    store = open_store(target)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            # listening before uvicorn runs: a browser opened on the printed address
            # waits in the backlog instead of being refused
            listener.listen(128)
            shown = f"[{host}]" if family == socket.AF_INET6 else host
            print(
                f"everstore: serving {target} on http://{shown}:{listener.getsockname()[1]}/"
                " (Ctrl-C stops it)",
                flush=True,
            )
            config = uvicorn.Config(create_app(store), log_level="warning", lifespan="off")
            uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on Ctrl-C, then raises the signal again: the
        # caller (the CLI) ends normally rather than with a traceback
        pass
    finally:
        store.close()

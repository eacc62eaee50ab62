"""Run localstripe on a loopback port chosen by the kernel, for the test session.

Why not plain ``localstripe --port N``: that binds every interface (``::``), needs a port picked
in advance (racy when several test sessions run at once) and pickles its whole store to the
shared ``/tmp/localstripe.pickle`` on every write (slow, and clobbers other sessions' servers).
This wrapper serves the very same aiohttp application, but:

- binds ``127.0.0.1`` port 0 and prints ``PORT <n>`` on stdout once listening;
- turns the on-disk persistence off (the server state lives only as long as the process).

Run as ``python tests/stripe/localstripe_server.py``; stop it with SIGTERM.
"""

from __future__ import annotations

import socket

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    # Persistence off: state is per process, and no shared file in /tmp is touched.
    resources.Store.dump_to_disk = lambda self: None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def announce(_app: web.Application) -> None:
        print(f"PORT {port}", flush=True)

    server.app.on_startup.append(announce)
    web.run_app(server.app, sock=sock, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()

"""Real components for the fault tests: a TCP proxy that can cut a session at a chosen server
message, a listener that never answers, and a pgbouncer in transaction pooling mode."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.pg_cluster import PgCluster, _free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class CuttingProxy:
    """Forwards TCP between clients and a PostgreSQL server. ``arm(tag, before=...)`` makes it
    cut the next session that receives a CommandComplete whose tag starts with ``tag``
    (b"COMMIT"): ``before=True`` closes both sides instead of forwarding that message (the
    server committed, the client never hears it), ``before=False`` right after forwarding it.
    ``refuse_new`` makes later connections fail at once (no fresh session can look anything
    up)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = _free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._armed: tuple[bytes, bool] | None = None
        self.cuts = 0
        self.refuse_new = False
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def arm(self, tag: bytes, *, before: bool) -> None:
        with self._lock:
            self._armed = (tag, before)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse_new:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump_up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump_down, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump_up(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _pump_down(self, src: socket.socket, dst: socket.socket) -> None:
        """Server to client, message by message (type byte, int32 length)."""
        buf = b""
        try:
            while data := src.recv(65536):
                buf += data
                out = b""
                while True:
                    if len(buf) < 5:
                        break
                    length = struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < 1 + length:
                        break
                    msg, buf = buf[: 1 + length], buf[1 + length :]
                    cut = self._should_cut(msg)
                    if cut == "before":
                        dst.sendall(out)
                        raise _Cut
                    out += msg
                    if cut == "after":
                        dst.sendall(out)
                        raise _Cut
                if out:
                    dst.sendall(out)
        except (_Cut, OSError):
            pass
        finally:
            _close(src, dst)

    def _should_cut(self, msg: bytes) -> str | None:
        if msg[:1] != b"C":
            return None
        with self._lock:
            armed = self._armed
            if armed is None or not msg[5:].startswith(armed[0]):
                return None
            self._armed = None
            self.cuts += 1
        return "before" if armed[1] else "after"


class _Cut(Exception):
    pass


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


class SilentListener:
    """Accepts TCP connections (the kernel completes the handshake) and never answers."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()


class PgBouncer:
    """A real pgbouncer in front of ``cluster``: transaction pooling, ``DISCARD ALL`` after
    every transaction (``server_reset_query_always``), two server connections per pool, so
    sessions are multiplexed and reset between every two transactions of a client."""

    def __init__(self, cluster: PgCluster) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="autumn-pgbouncer-"))
        self.port = _free_port()
        users = self.dir / "users.txt"
        users.write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={cluster.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            "server_reset_query = DISCARD ALL\n"
            "server_reset_query_always = 1\n"
            # pgbouncer 1.18 refuses startup options it does not know; the store's
            # lock/statement timeouts then do not reach the server (its client-side bound stays).
            "ignore_startup_parameters = extra_float_digits,options\n"
            "default_pool_size = 2\n"
            "max_client_conn = 200\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            for f in (users, ini):
                os.chown(f, pw.pw_uid, pw.pw_gid)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.proc = subprocess.Popen(
            [PGBOUNCER, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **kwargs,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("pgbouncer did not start listening")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

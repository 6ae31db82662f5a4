"""A candidate config run by the LB's real binary on lbctl's machine, with stubs for servers.

`open_sandbox` rewrites the config so that it can run here and tell where each request
went: listeners move to free ports on a loopback address of its own (127.x.y.z, drawn at
random, so nothing else on the machine shares it even though the LBs set SO_REUSEPORT),
every server or upstream becomes a stub that answers with its backend and server name
(`lbctl.sandbox.stub`), and what belongs to the LB host is neutralised: users, chroot,
daemon mode, pid files, sockets, logs; certificates are replaced by a generated one and
the files a config loads (maps, ACL lists) come from the store when it has them. What the
kind's module cannot neutralise, the binary refuses, and its words become the reason the
sandbox could not run (`SandboxUnavailable`): a Lua file, a module, a file that is missing.

A sandbox is a context manager: leaving it stops the LB and the stubs and removes its
directory, whatever happened. The stub process keeps the LB (it starts it, and stops its
process group when lbctl's end of the pipe closes), so even a killed lbctl leaves neither.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lbctl.errors import LbctlError, SandboxUnavailable

if TYPE_CHECKING:
    from lbctl.sandbox.running import Sandbox

BACKEND_HEADER = "X-Lbctl-Backend"  # how a stub says which backend and server answered
SERVER_HEADER = "X-Lbctl-Server"
START_TIMEOUT = 15.0
FindFile = Callable[[str], "bytes | None"]  # a file the config names (a map, an ACL list) → its bytes, if known


@dataclass(frozen=True)
class Listener:
    """Where the config accepts requests: named as the kind names it, moved to `address`."""

    label: str  # HAProxy: the frontend or listen section; nginx: ":PORT"; Caddy: the server's name
    port: int | None  # the port it has on the LB
    address: tuple[str, int]  # where it listens in the sandbox
    tls: bool = False


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # the client's address, as the LB should see it
    port: int | None = None  # the LB port it arrives on (default: the sandbox's first listener)
    listener: str | None = None  # or the listener's label (a HAProxy log names its frontend)


@dataclass(frozen=True)
class Answer:
    listener: str
    status: int | None  # None: no HTTP answer (then `error` says what happened)
    backend: str | None  # None: the LB answered itself (deny, redirect, return) or nothing answered
    server: str | None
    error: str | None = None

    @property
    def endpoint(self) -> str:
        """Where the request ended, as one word: `backend/server`, or the LB's own status."""
        if self.backend is not None:
            return f"{self.backend}/{self.server}"
        return f"({self.status})" if self.status is not None else "(no answer)"


@dataclass
class Setup:
    """What a kind's module works with while it rewrites a config (`rewrite(main, setup)`)."""

    directory: Path
    address: str
    includes: dict[str, bytes]  # the bundle's included files, relative to the main file
    find_file: FindFile
    stubs: list[tuple[socket.socket, str, str]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    reserved: list[socket.socket] = field(default_factory=list)  # listener ports, held until the LB starts
    _cert: Path | None = None

    def stub(self, backend: str, server: str) -> str:
        """A stub that answers as `backend`/`server`: its `host:port`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, 0))
        sock.listen(512)
        self.stubs.append((sock, backend, server))
        return f"{self.address}:{sock.getsockname()[1]}"

    def listen(self, label: str, port: int | None, *, tls: bool = False) -> tuple[str, int]:
        """A free port on the sandbox's address for the listener `label` (original `port`)."""
        # Bound (not listening) until the LB starts, so that no stub's port-0 bind is given the same port.
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.bind((self.address, 0))
        self.reserved.append(probe)
        address = (self.address, int(probe.getsockname()[1]))
        self.listeners.append(Listener(label, port, address, tls))
        return address

    def release(self) -> None:
        """Close what the sandbox's process holds now (or will never need): reserved ports, stub sockets."""
        for sock in (*self.reserved, *(s for s, _, _ in self.stubs)):
            with contextlib.suppress(OSError):
                sock.close()
        self.reserved.clear()

    def certificate(self) -> Path:
        """A throwaway self-signed certificate and key, in one PEM file (HAProxy's `crt` form)."""
        if self._cert is None:
            self._cert = self.directory / "sandbox.pem"
            self._cert.write_bytes(_self_signed())
        return self._cert

    def write(self, rel: str, data: bytes) -> Path:
        path = self.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


@dataclass(frozen=True)
class Launch:
    """How to run the rewritten config: the command, its environment, how a client's source is told."""

    argv: list[str]
    source_header: str  # the request header the rewritten config reads the client's address from
    env: dict[str, str] = field(default_factory=dict)
    check_argv: list[str] | None = None  # a native check of the rewritten config, run first for its messages


@contextlib.contextmanager
def open_sandbox(
    kind: str,
    main: bytes,
    *,
    filename: str,
    includes: dict[str, bytes] | None = None,
    find_file: FindFile = lambda path: None,
) -> Iterator[Sandbox]:
    """Run `main` (and its `includes`) with the `kind`'s binary; `SandboxUnavailable` when it cannot."""
    import importlib

    module = importlib.import_module(f"lbctl.sandbox.{kind}")  # haproxy.py, nginx.py, caddy.py
    directory = Path(tempfile.mkdtemp(prefix="lbctl-sandbox-"))
    setup = Setup(directory, _loopback_address(), dict(includes or {}), find_file)
    sandbox: Sandbox | None = None
    try:
        try:
            launch: Launch = module.rewrite(main, setup, filename=filename)
        except SandboxUnavailable:
            raise
        except LbctlError as exc:  # e.g. a config that does not parse
            raise SandboxUnavailable(f"the config could not be prepared for a sandbox: {exc.message}") from None
        except Exception as exc:  # the routing gate must not stop a deploy on lbctl's own bug: say it
            raise SandboxUnavailable(
                f"lbctl could not rewrite this {kind} config for a sandbox ({type(exc).__name__}: {exc})",
                hint="please report it with the config; run with --debug for details",
            ) from exc
        from lbctl.sandbox.running import Sandbox

        sandbox = Sandbox(kind, setup, launch)
        sandbox.start()
        yield sandbox
    finally:
        if sandbox is not None:
            sandbox.close()
        else:
            setup.release()
            shutil.rmtree(directory, ignore_errors=True)


def binary(name: str) -> str:
    """The LB's binary on this machine, or `SandboxUnavailable` naming it."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found is None:
        raise SandboxUnavailable(f"{name} is not installed on this machine", hint=f"install {name} where lbctl runs")
    return found


def _loopback_address() -> str:
    """A loopback address of the sandbox's own, away from 127.0.0.x where most things listen."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _self_signed() -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lbctl-sandbox")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def request_of(route: object) -> Request:
    """A `Request` from a routing case of lbctl.toml (`config.Route`)."""
    from lbctl.config import Route

    assert isinstance(route, Route)
    return Request(
        path=route.path,
        method=route.method,
        host=route.host,
        headers=tuple(route.headers.items()),
        source=route.source,
        port=route.port,
    )

"""Logging in to one SSH endpoint as OpenSSH would: verified host keys, keys, agent, tunnels.

Host keys are checked against known_hosts (and /etc/ssh/ssh_known_hosts): an unknown key is
refused (exit 6) unless `LBCTL_SSH_TRUST_NEW=1` opts in to trust on first use, which records it;
a changed key is always refused (exit 2). Authentication failures are not retried (exit 6).
Connection failures are `TransientError`s, for the caller's retry policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import socket
from base64 import b64encode
from typing import TYPE_CHECKING, Any, cast

from lbctl.errors import AuthenticationFailed, ConfigError, HostKeyChanged, HostKeyUnknown, LbctlError, TransientError
from lbctl.transports.ssh_config import Endpoint

if TYPE_CHECKING:
    import paramiko

log = logging.getLogger("lbctl.ssh")
# paramiko logs a lost or silent connection with its traceback; Python's last-resort handler would
# print that on the terminal. lbctl reports the failure itself; `--debug` shows paramiko's log.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

TRUST_NEW_ENV = "LBCTL_SSH_TRUST_NEW"


def connect(endpoint: Endpoint, sock: Any, timeout: float) -> paramiko.SSHClient:
    """Log in to one endpoint (over `sock` when it is a ProxyJump tunnel), keys verified."""
    import paramiko

    try:
        if sock is None:
            sock = socket.create_connection((endpoint.hostname, endpoint.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        raise TransientError(f"{endpoint.where}: {type(exc).__name__}: {exc}") from None
    client = paramiko.SSHClient()
    try:
        _load_host_keys(client, endpoint)
        client.set_missing_host_key_policy(_host_key_policy(endpoint, trust_new=_trust_new()))
        client.connect(
            endpoint.hostname,
            port=endpoint.port,
            username=endpoint.user,
            sock=sock,
            key_filename=cast(str, list(endpoint.identity_files)) if endpoint.identity_files else None,
            allow_agent=not endpoint.identities_only or not endpoint.identity_files,
            look_for_keys=not endpoint.identity_files,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyChanged(
            f"the host key of {endpoint.known_hosts_name} has CHANGED (now {fingerprint(exc.key)}, "
            f"known_hosts {endpoint.known_hosts} says {fingerprint(exc.expected_key)}): refusing to connect",
            hint="someone may be intercepting the connection; if the host was really re-keyed, verify the new "
            f"fingerprint out of band, then `ssh-keygen -R {shlex.quote(endpoint.known_hosts_name)} "
            f"-f {shlex.quote(endpoint.known_hosts)}` and connect again",
        ) from None
    except (paramiko.PasswordRequiredException, paramiko.AuthenticationException) as exc:
        client.close()
        raise AuthenticationFailed(
            f"{endpoint.where}: authentication failed ({exc}); nothing was changed",
            hint="check user and identity_file (or ~/.ssh/config), and that the key is in the host's "
            "authorized_keys; encrypted keys must be loaded into ssh-agent",
        ) from None
    except LbctlError:
        client.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise TransientError(f"{endpoint.where}: {type(exc).__name__}: {exc}") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(15)
    return client


def tunnel(
    client: paramiko.SSHClient, jumps: tuple[Endpoint, ...], final: Endpoint, hop: Endpoint, timeout: float
) -> Any:
    """A direct-tcpip channel from `hop` to the next endpoint on the route."""
    chain = (*jumps, final)
    nxt = chain[chain.index(hop) + 1]
    transport = client.get_transport()
    if transport is None:
        raise TransientError(f"{hop.where}: the jump connection closed")
    try:
        return transport.open_channel("direct-tcpip", (nxt.hostname, nxt.port), ("127.0.0.1", 0), timeout=timeout)
    except Exception as exc:
        raise TransientError(f"{hop.where} could not open a tunnel to {nxt.hostname}:{nxt.port}: {exc}") from None


def _load_host_keys(client: paramiko.SSHClient, endpoint: Endpoint) -> None:
    if os.path.isfile("/etc/ssh/ssh_known_hosts"):
        with contextlib.suppress(OSError):
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
    if os.path.isfile(endpoint.known_hosts):
        try:
            client.load_host_keys(endpoint.known_hosts)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read known_hosts: {exc}", file=endpoint.known_hosts) from None


def _trust_new() -> bool:
    return os.environ.get(TRUST_NEW_ENV, "").lower() in ("1", "yes", "true")


def _host_key_policy(endpoint: Endpoint, *, trust_new: bool) -> paramiko.MissingHostKeyPolicy:
    """OpenSSH's StrictHostKeyChecking=yes, or =accept-new when the user opted in."""
    import paramiko

    class Refuse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            e = endpoint
            raise HostKeyUnknown(
                f"{e.known_hosts_name} is not in {e.known_hosts} (its {key.get_name()} key is {fingerprint(key)}):"
                " refusing to connect; nothing was changed",
                hint=f"check that fingerprint out of band, then add it with `ssh-keyscan -p {e.port} "
                f"{shlex.quote(e.hostname)} >> {shlex.quote(e.known_hosts)}`, or run once with {TRUST_NEW_ENV}=1 "
                "to trust it on first use and record it",
            )

    class TrustNew(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            e = endpoint
            os.makedirs(os.path.dirname(e.known_hosts) or ".", mode=0o700, exist_ok=True)
            with open(e.known_hosts, "a", encoding="ascii") as f:
                f.write(f"{e.known_hosts_name} {key.get_name()} {key.get_base64()}\n")
            log.warning(
                "lbctl: trusted the new %s host key of %s (%s) on first use; recorded in %s",
                key.get_name(),
                e.known_hosts_name,
                fingerprint(key),
                e.known_hosts,
            )

    return TrustNew() if trust_new else Refuse()


def fingerprint(key: Any) -> str:
    return "SHA256:" + b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")

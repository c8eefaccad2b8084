"""Running a node: the store opened for writing, its cameras recording, the HTTP API on a TCP
address and on the store's Unix socket, until SIGTERM or SIGINT. SIGHUP reloads vstore.toml.

Stopping: the listeners close and open requests get a few seconds to finish, then every
recorder flushes and seals, then the store closes. Nothing acknowledged is lost: a writer
seals what it was given before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

from vstore.api import open_store
from vstore.base.errors import ConfigError, UsageError
from vstore.base.loopback import is_loopback
from vstore.service.http_api import make_app
from vstore.service.http_common import serve_store_socket
from vstore.service.node import Node

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8480"
SHUTDOWN_GRACE_S = 5.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8480`` for IPv6) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, such as 127.0.0.1:8480")
    return host, int(port)


def serve(
    store_path: str | None,
    listen: str = DEFAULT_LISTEN,
    allow_plain_http: bool = False,
    on_ready: Callable[[str, Node], None] | None = None,
) -> None:
    """Run a node on the store until a stop signal. ``on_ready(url, node)`` is called once
    it listens."""
    host, port = parse_listen(listen)
    # Never a new store: a mistyped --store would serve an empty one (`vstore init` makes it).
    with open_store(store_path, create=False) as store:
        svc = store.config.service
        tls: ssl.SSLContext | None = None
        if svc.tls_cert and svc.tls_key:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                tls.load_cert_chain(svc.tls_cert, svc.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"[service] tls_cert/tls_key: {exc}") from exc
        elif not is_loopback(host) and not allow_plain_http:
            raise UsageError(
                f"--listen {listen}: plain HTTP is served on loopback only; set tls_cert and "
                "tls_key in [service], or pass --allow-plain-http (behind a TLS proxy)"
            )
        for note in store.config.notes:
            log.warning("vstore.toml: %s", note)
        node = Node(store)
        node.start()
        try:
            asyncio.run(_serve(node, host, port, tls, on_ready))
        finally:
            node.stop()


async def _serve(
    node: Node,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    on_ready: Callable[[str, Node], None] | None,
) -> None:
    app = make_app(node)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    sock = node.store.layout.socket_path
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {_netloc(host, port)}: {exc.strerror or exc} (is another "
                "node using it? pick another with --listen)"
            ) from exc
        await serve_store_socket(runner, sock)
        bound = runner.addresses[0]
        url = f"{'https' if tls else 'http'}://{_netloc(bound[0], bound[1])}"
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(node)))
        log.info("serving %s on %s and %s", node.store.root, url, sock)
        # (off the loop: the bucket may be slow or away, and the node serves regardless)
        loop.run_in_executor(None, node.advertise, _public_url(node, url, bound[0]))
        if on_ready is not None:
            on_ready(url, node)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        sock.unlink(missing_ok=True)


def _public_url(node: Node, url: str, host: str) -> str:
    """The URL others reach the API by: [service] url, else the bound address (the host's
    name in place of a wildcard address)."""
    if node.store.config.service.url:
        return node.store.config.service.url
    if host in ("0.0.0.0", "::"):
        return url.replace(_netloc(host, 0).rsplit(":", 1)[0], socket.getfqdn(), 1)
    return url


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _reload(node: Node) -> None:
    try:
        changes = await asyncio.to_thread(node.reload, "signal")
        log.info("vstore.toml reloaded (SIGHUP): %s", changes)
    except ConfigError as exc:
        log.error("configuration not reloaded (the old one stays in force): %s", exc)

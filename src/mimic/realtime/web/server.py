"""Serving the web page: ``python realtime.py ui=web`` runs `serve`, which checks where and how to listen
(`listening`: host, port, TLS files, the token a host other than loopback needs), binds the socket and runs the app of
`main.create_app` on uvicorn until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import signal
import socket
import ssl
import threading
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from starlette.middleware.trustedhost import TrustedHostMiddleware

from mimic.errors import UserError
from mimic.io import atomic_write
from mimic.realtime.web.main import create_app

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Listening:
    """Where and how the server listens: checked settings and the page's address."""

    host: str
    port: int
    token: str | None
    certfile: str | None
    keyfile: str | None

    @property
    def url(self) -> str:
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.token}" if self.token else ""
        return f"{'https' if self.certfile else 'http'}://{host}:{self.port}/{query}"


def listening(cfg: DictConfig) -> Listening:
    """The server's settings, checked (`UserError` naming the setting): TLS files both or neither and loadable; a
    host other than loopback gets a random token unless ``ui.token`` sets one."""
    ui = cfg.ui
    host, port = str(ui.host), int(ui.port)
    cert, key = ui.get("ssl_certfile"), ui.get("ssl_keyfile")
    if bool(cert) != bool(key):
        raise UserError(
            "ui.ssl_certfile and ui.ssl_keyfile go together: set both (the certificate and its private key, PEM "
            "files) for HTTPS, or neither"
        )
    if cert:
        cert, key = str(Path(str(cert)).expanduser()), str(Path(str(key)).expanduser())
        for setting, path in (("ui.ssl_certfile", cert), ("ui.ssl_keyfile", key)):
            if not Path(path).is_file():
                raise UserError(f"{setting}={path}: no such file")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise UserError(
                f"ui.ssl_certfile={cert}, ui.ssl_keyfile={key}: not a usable certificate and key ({e})"
            ) from None
    token = ui.get("token")
    token = str(token) if token is not None else None
    if token is None and not _loopback(host):
        token = secrets.token_urlsafe(24)
    if not _loopback(host) and not cert:
        log.warning(
            "host=%s without TLS: browsers on other machines open the camera only over HTTPS (set "
            "ui.ssl_certfile and ui.ssl_keyfile), and the token travels unencrypted",
            host,
        )
    return Listening(host, port, token, cert, key)


REDACTED = "<redacted>"


def _redacted(value: Any, token: str) -> Any:
    """``value`` (YAML data) with ``token`` replaced where it is the value of a ``token`` key or of an override
    (``ui.token=...``, in Hydra's override lists and ``override_dirname``)."""
    if isinstance(value, dict):
        return {k: REDACTED if k == "token" and str(v) == token else _redacted(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, token) for v in value]
    if isinstance(value, str):
        quoted = "|".join(re.escape(q + token + q) for q in ("", "'", '"'))
        return re.sub(rf"(token=)(?:{quoted})(?=,|$)", rf"\g<1>{REDACTED}", value)
    return value


def redact_run_files(token: str) -> None:
    """Take ``ui.token`` out of the files Hydra saved in the run's folder (``.hydra/config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``): a secret is never left on disk. Nothing to do outside a Hydra run."""
    try:
        hydra = HydraConfig.get()
    except ValueError:
        return
    if hydra.output_subdir is None:
        return
    folder = Path(hydra.runtime.output_dir) / str(hydra.output_subdir)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        path = folder / name
        if path.is_file():
            text = yaml.safe_dump(_redacted(yaml.safe_load(path.read_text()), token), sort_keys=False)
            atomic_write(path, lambda tmp, text=text: tmp.write_text(text))


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise UserError(f"host={host}: not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host}:{port} ({e.strerror}): choose another port with port=<number>"
        ) from None
    sock.listen(2048)  # connections made as soon as the address is printed wait for uvicorn to accept them
    return sock


def serve(cfg: DictConfig) -> None:
    """Serve the page until Ctrl-C or SIGTERM; the address goes to stdout before serving. Every CSV log is closed
    on the way out (and its rows were flushed frame by frame anyway)."""
    where = listening(cfg)
    app = create_app(cfg, where.token)  # a model or setting that does not work stops the start, not the first page
    sessions = app.state.web.sessions
    if _loopback(where.host):  # refuse other Host names: a page elsewhere reaching it by a DNS name (rebinding)
        hosts = {"localhost", "127.0.0.1", "[::1]", f"[{where.host}]" if ":" in where.host else where.host}
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted(hosts))
    if cfg.ui.get("token") is not None:
        redact_run_files(str(cfg.ui.token))
    sock = _bind(where.host, where.port)
    config = uvicorn.Config(
        app,
        ssl_certfile=where.certfile,
        ssl_keyfile=where.keyfile,
        ws_max_size=4 * int(cfg.ui.max_frame_bytes) + 65536,
        log_config=None,  # keep Hydra's logging
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    print(f"mimic web page: {where.url}", flush=True)
    print(f"logs: {sessions.log_dir}", flush=True)
    if cfg.ui.open_browser:
        threading.Timer(1.0, webbrowser.open, [where.url]).start()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        sock.close()
    rows = sum(entry.csv.rows for entry in sessions.logs.values())
    print(f"mimic web page stopped: {len(sessions.logs)} logs, {rows} face rows in {sessions.log_dir}", flush=True)

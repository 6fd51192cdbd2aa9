"""A throw-away certificate for the TLS scenario: made at start-up with the ``openssl`` CLI.

The load server serves https with it; every client trusts it the same way, through one
``ssl.SSLContext`` that has this certificate as its only authority.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path


def available() -> bool:
    return shutil.which("openssl") is not None


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key): self-signed, ECDSA P-256, valid for 127.0.0.1 for one day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def client_context(cert: Path) -> ssl.SSLContext:
    """Verifies the server against ``cert`` only (hostname checked as usual)."""
    return ssl.create_default_context(cafile=str(cert))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context

"""The analyzer API in-process for its tests (tests/analyzer/api/): requests through httpx's
ASGI transport, an app over a fresh store whose clock the test sets, and shipments that make
the slices' verdicts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI

from analyzer.api.app import create_app
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from collector.contract.codec import encode_body
from tests.analyzer_support import T0, batch, health, observation, settled, window

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def call(app: FastAPI, method: str, url: str, **kwargs) -> httpx.Response:
    """One request to `app`, in-process."""

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://analyzer") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(send())


class Api:
    """Calls the app in-process; `now` is the analyzer's clock."""

    def __init__(self, token: str | None = TOKEN, prober=None, hints=None, **options) -> None:
        self.now = settled(T0)
        self.store = WindowStore(default_policies(), catch_up_s=0)
        self.app = create_app(self.store, token=token, prober=prober, hints=hints, clock=lambda: self.now, **options)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        return call(self.app, method, url, **kwargs)

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def ship(self, shipment, *, headers=AUTH) -> httpx.Response:
        self.now = settled(max((w.seq for w in shipment.windows), default=T0))
        return self.post("/v1/windows", content=encode_body(shipment), headers=headers)


def lossy_video(api: Api, intervals: int = 8) -> None:
    """`intervals` intervals: video core path losing 80%, video edge path clean, egov clean."""
    for seq in range(T0, T0 + intervals):
        response = api.ship(
            batch(
                window(seq, lost=8),
                window(seq, target="edge", p99_ns=9_000_000),
                window(seq, slice_="egov"),
                observations=(observation(),),
                health=health(),
            )
        )
        assert response.status_code == 200, response.text


def write_self_signed_cert(directory: Path, host: str = "::1") -> tuple[Path, Path]:
    """A certificate for `host` (its own CA) and its key as PEM files in `directory`: (cert, key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xnetmon analyzer test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path

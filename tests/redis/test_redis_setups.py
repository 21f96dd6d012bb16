"""Real deployments: AUTH with a password and an ACL user, TLS (rediss://), and a shared Redis."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.client import connect
from harness.processes import free_port, http_get
from harness.redis import RedisServer


async def _signal_across(one, two, room: str) -> None:
    async with connect(one.ws_url) as alice, connect(two.ws_url) as bob:
        await alice.join(room), await bob.join(room)
        assert (await alice.recv())["peer"] == bob.peer
        await bob.send({"type": "signal", "to": alice.peer, "data": {"room": room}})
        assert await alice.recv() == {"type": "signal", "from": bob.peer, "data": {"room": room}}


@pytest.fixture
def secured_redis(tmp_path: Path):
    # The ACL user may touch only keys and channels under the default prefix.
    server = RedisServer(
        tmp_path / "redis",
        extra=[
            "--requirepass",
            "s3cret",
            "--user",
            *[
                "tallowapp",
                "on",
                ">app-pass",
                "~tallow:*",
                "&tallow:*",
                "+@all",
                "-@admin",
                "-@dangerous",
            ],
        ],
        cli_args=["--no-auth-warning", "-a", "s3cret"],
    ).start()
    yield server
    server.kill()


async def test_password_and_acl_user(start_tallow, secured_redis) -> None:
    base = f"127.0.0.1:{secured_redis.port}"
    with_password = {"REDIS_URL": f"redis://:s3cret@{base}"}
    with_acl_user = {"REDIS_URL": f"redis://tallowapp:app-pass@{base}"}
    await _signal_across(start_tallow(env=with_password), start_tallow(env=with_acl_user), "auth")
    assert secured_redis.scan_keys("tallow:*")

    wrong = start_tallow(env={"REDIS_URL": f"redis://tallowapp:wrong@{base}"})
    status, _, body = http_get(wrong.url + "/api/ready")
    broker = json.loads(body)["checks"]["broker"]
    assert status == 503 and broker["ok"] is False
    assert "Authentication" in broker["detail"], broker
    assert http_get(wrong.url + "/api/health")[0] == 200
    assert "s3cret" not in wrong.log() and "app-pass" not in wrong.log()


def _tls_files(folder: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tallow test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


async def test_tls_rediss_url(start_tallow, tmp_path: Path) -> None:
    files = _tls_files(tmp_path / "tls")
    port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        port=port,
        extra=[
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(files["cert"]), "--tls-key-file", str(files["key"])),
            *("--tls-ca-cert-file", str(files["ca"]), "--tls-auth-clients", "no"),
        ],
        cli_args=["--tls", "--cacert", str(files["ca"])],
    ).start()
    try:
        env = {"REDIS_URL": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={files['ca']}"}
        await _signal_across(start_tallow(env=env), start_tallow(env=env), "tls")
        assert server.scan_keys("tallow:*")
        # Without the CA the certificate is not trusted: not ready, and says why.
        untrusting = start_tallow(env={"REDIS_URL": f"rediss://127.0.0.1:{port}/0"})
        status, _, body = http_get(untrusting.url + "/api/ready")
        assert status == 503, body
    finally:
        server.kill()


async def test_prefixes_keep_deployments_on_one_redis_apart(start_tallow, redis_server) -> None:
    blue = [start_tallow(env={"REDIS_URL": redis_server.url, "REDIS_PREFIX": "blue"})]
    green = [start_tallow(env={"REDIS_URL": redis_server.url, "REDIS_PREFIX": "green"})]
    async with connect(blue[0].ws_url) as alice, connect(green[0].ws_url) as bob:
        assert (await alice.join("same-code"))["peers"] == []
        assert (await bob.join("same-code"))["peers"] == []
        assert await alice.nothing_pending()
        keys = redis_server.scan_keys()
        assert {key.split(":")[0] for key in keys} == {"blue", "green"}
        assert "blue:room:SAME-CODE" in keys and "green:room:SAME-CODE" in keys

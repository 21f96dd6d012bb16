"""A production-like stack on loopback: the shipped nginx.conf in front of two Tallow replicas
sharing a password-protected Redis, and coturn with the shipped turnserver.conf.

As under Compose, the replicas share one port on their own addresses (127.0.0.2, 127.0.0.3, ...)
and nginx finds them by the names "web" and "signaling" through a DNS server (tests.deployment.dns,
in place of Docker's), so replacing a replica is what an image update does: a new address
behind the same name. nginx.conf is used as shipped except for what must differ on one machine:
its listen ports, the replicas' port and the resolver's address (each rewrite must match exactly
once, so an edit of the shipped file that the test no longer understands fails loudly).
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import open_websocket_url

from harness.client import Client
from harness.processes import TallowProcess, free_port, http_get, launch, stop_all
from harness.redis import RedisServer
from tallow.http.headers import security_headers
from tallow.http.static import _FINGERPRINTED, PACKAGE_STATIC
from tests.deployment import nginx
from tests.deployment.artifacts import COTURN_CONF, NGINX_CONF
from tests.deployment.dns import DnsServer
from tests.deployment.tools import ROOT, run, tool

REDIS_PASSWORD = "stack-test-password"
TURN_SECRET = "stack-test-turn-secret"
METRICS_TOKEN = "stack-test-metrics-token"
START_TIMEOUT = 15.0
HTTPS_PORT_TEMPLATE = NGINX_CONF.with_name("tallow-https-port.conf.template")
HEALTH_CHECK = str(ROOT / "scripts" / "health-check.sh")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(log.read_text())


def _render_nginx_conf(http_port: int, https_port: int, dns_port: int, app_port: int) -> str:
    rewrites = {
        "listen 8080 default_server;": f"listen 127.0.0.1:{http_port} default_server;",
        "listen [::]:8080 default_server;": "",
        "listen 8443 ssl http2 default_server;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:8443 ssl http2 default_server;": "",
        "set $tallow_web web:3000;": f"set $tallow_web web:{app_port};",
        "set $tallow_signaling signaling:3000;": f"set $tallow_signaling signaling:{app_port};",
        # Shorter than the shipped 5 s only to keep the test quick.
        "resolver 127.0.0.11 valid=5s ipv6=off;": f"resolver 127.0.0.1:{dns_port} valid=1s;",
    }
    text = NGINX_CONF.read_text()
    for old, new in rewrites.items():
        assert text.count(old) == 1, f"nginx.conf no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@attrs.frozen
class Stack:
    replicas: list[TallowProcess]  # the current ones; a test may replace one
    http_port: int
    https_port: int
    turn_port: int
    tls: ssl.SSLContext
    certificate: Path
    dns: DnsServer
    start_replica: Any  # address -> a new, healthy TallowProcess on the replicas' port

    def https(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection("127.0.0.1", self.https_port, context=self.tls)

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        connection = self.https()
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response

    @property
    def wss_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/signaling"

    def route_to(self, replicas: list[TallowProcess]) -> None:
        """Point "web" and "signaling" at these replicas, as Docker's DNS does after an update."""
        addresses = [replica.host for replica in replicas]
        self.dns.records.update({"web": addresses, "signaling": addresses})


def _launch_at(folder: Path, env: dict[str, str], address: str, port: int) -> TallowProcess:
    started = launch(folder, env=env, args=["--host", address, "--port", str(port)], wait=False)
    replica = TallowProcess(started.process, port, started.log_path, host=address)
    replica.wait_healthy()
    return replica


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("stack")
    redis = RedisServer(
        folder / "redis",
        extra=["--requirepass", REDIS_PASSWORD],
        cli_args=["-a", REDIS_PASSWORD, "--no-auth-warning"],
    ).start()
    turn_port = free_port()
    coturn_command = [tool("turnserver"), "-c", str(COTURN_CONF), "--listening-ip", "127.0.0.1"]
    coturn_command += ["--relay-ip", "127.0.0.1", "--listening-port", str(turn_port)]
    coturn_command += ["--static-auth-secret", TURN_SECRET, "--realm", "localhost"]
    coturn_command += ["--pidfile", str(folder / "turnserver.pid")]
    coturn_command += ["--userdb", str(folder / "turndb")]
    coturn = _start(coturn_command, folder / "coturn.log")
    processes = [coturn]
    started: list[TallowProcess] = []
    app_port = free_port()
    env = {
        "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis.port}/0",
        "STUN_URLS": f"stun:127.0.0.1:{turn_port}",
        "TURN_URLS": f"turn:127.0.0.1:{turn_port}?transport=udp",
        "TURN_SECRET": TURN_SECRET,
        "TALLOW_TRUSTED_PROXIES": "127.0.0.1/32",
        "METRICS_TOKEN": METRICS_TOKEN,
    }

    def start_replica(address: str) -> TallowProcess:
        started.append(_launch_at(folder, env, address, app_port))
        return started[-1]

    try:
        with DnsServer() as dns:
            _wait_for_port(turn_port, coturn, folder / "coturn.log")
            replicas = [start_replica("127.0.0.2"), start_replica("127.0.0.3")]
            http_port, https_port = free_port(), free_port()
            conf = _render_nginx_conf(http_port, https_port, dns.port, app_port)
            certificate = nginx.prepare(folder / "nginx", conf)
            # What the nginx image's entrypoint does with the template at start.
            https_port_conf = HTTPS_PORT_TEMPLATE.read_text().replace(
                "${HTTPS_PORT}", str(https_port)
            )
            (folder / "nginx" / "scratch" / "tallow-https-port.conf").write_text(https_port_conf)
            proxy = _start(
                nginx.command(folder / "nginx", "-g", "daemon off;"), folder / "nginx.log"
            )
            processes.append(proxy)
            _wait_for_port(https_port, proxy, folder / "nginx.log")
            tls = ssl.create_default_context(cafile=str(certificate))
            built = Stack(
                replicas, http_port, https_port, turn_port, tls, certificate, dns, start_replica
            )
            built.route_to(replicas)
            yield built
    finally:
        for process in processes:
            _stop(process)
        stop_all(started)
        redis.kill()


def test_replicas_are_ready_on_the_password_protected_redis(stack: Stack) -> None:
    for replica in stack.replicas:
        status, _, body = http_get(replica.url + "/api/ready")
        assert status == 200, body
        assert json.loads(body)["checks"]["broker"]["broker"] == "redis"


def test_https_responses_carry_the_apps_security_headers_exactly_once(stack: Stack) -> None:
    for path in ("/", "/api/health", "/no-such-file"):
        response = stack.get(path)
        assert response.status == (404 if path == "/no-such-file" else 200)
        for name, value in security_headers(https=True):
            assert response.msg.get_all(name.decode()) == [value.decode()], (path, name)
        assert response.getheader("X-Request-ID")


def test_request_id_and_client_address_reach_the_replica(stack: Stack) -> None:
    request_id = f"stack-{uuid.uuid4().hex}"
    # A client cannot claim another address: nginx replaces X-Forwarded-For with its peer.
    headers = {"X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"}
    response = stack.get("/api/health", headers)
    assert response.status == 200 and response.getheader("X-Request-ID") == request_id
    deadline = time.monotonic() + 5
    entries: list[dict[str, Any]] = []
    while not entries and time.monotonic() < deadline:
        logs = [entry for replica in stack.replicas for entry in replica.log_entries()]
        entries = [entry for entry in logs if entry.get("request_id") == request_id]
        time.sleep(0.05)
    (entry,) = entries
    assert entry["client"] == "127.0.0.1" and entry["path"] == "/api/health"


def test_plain_http_redirects_to_https_on_the_published_port(stack: Stack) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stack.http_port)
    connection.request("GET", "/app?x=1", headers={"Host": f"tallow.test:{stack.http_port}"})
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://tallow.test:{stack.https_port}/app?x=1"
    response.read()
    # The one plain-HTTP answer: nginx's own health check (the Compose healthcheck uses it).
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok\n"


def test_fingerprinted_assets_are_cached_at_the_edge_and_compressed(stack: Stack) -> None:
    asset = next(p for p in PACKAGE_STATIC.iterdir() if _FINGERPRINTED.search(p.name))
    assert asset.suffix in (".js", ".css") and asset.stat().st_size > 1024
    answers = [stack.get(f"/{asset.name}", {"Accept-Encoding": "gzip"}) for _ in range(2)]
    assert [answer.getheader("X-Cache-Status") for answer in answers] == ["MISS", "HIT"]
    for answer in answers:
        assert answer.status == 200
        assert answer.getheader("Cache-Control") == "public, max-age=31536000, immutable"
        assert answer.getheader("Content-Encoding") == "gzip"


def _metrics(replica: TallowProcess, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = http_get(replica.url + "/api/metrics", headers)
    return status, body.decode()


def _connections_accepted(replica: TallowProcess) -> float:
    """A counter, not the open-connections gauge: a connection closed a moment ago and a new
    one on the same replica would leave the gauge unchanged."""
    found = re.search(r"^tallow_connections_total (\S+)$", _metrics(replica)[1], re.MULTILINE)
    assert found is not None
    return float(found.group(1))


@asynccontextmanager
async def _peer(stack: Stack) -> AsyncIterator[Client]:
    async with open_websocket_url(stack.wss_url, ssl_context=stack.tls) as ws:
        with trio.fail_after(5):
            welcome = json.loads(await ws.get_message())
        assert welcome["type"] == "welcome"
        yield Client(ws, welcome)


async def _replica_of(stack: Stack, before: list[float]) -> int:
    """Which replica the connection just opened landed on (its accepted connections rose)."""
    with trio.fail_after(5):
        while True:
            now = [_connections_accepted(replica) for replica in stack.replicas]
            risen = [i for i, (b, n) in enumerate(zip(before, now, strict=True)) if n > b]
            if risen:
                return risen[0]
            await trio.sleep(0.05)


async def test_wss_signaling_through_nginx_between_peers_on_different_replicas(
    stack: Stack,
) -> None:
    before = [_connections_accepted(replica) for replica in stack.replicas]
    async with _peer(stack) as alice:
        home = await _replica_of(stack, before)
        for _attempt in range(6):  # nginx balances round-robin: the next one lands elsewhere
            before = [_connections_accepted(replica) for replica in stack.replicas]
            async with _peer(stack) as bob:
                if await _replica_of(stack, before) == home:
                    continue
                room = (await alice.request({"type": "create"}))["room"]
                await alice.join(room, "alice")
                joined = await bob.join(room, "bob")
                assert [peer["peer"] for peer in joined["peers"]] == [alice.peer]
                assert (await alice.recv())["type"] == "peer-joined"
                await alice.send({"type": "signal", "to": bob.peer, "data": {"sdp": "offer"}})
                assert await bob.recv() == {
                    "type": "signal",
                    "from": alice.peer,
                    "data": {"sdp": "offer"},
                }
                await bob.send({"type": "signal", "to": alice.peer, "data": {"sdp": "answer"}})
                assert (await alice.recv())["data"] == {"sdp": "answer"}
                return
    raise AssertionError("every connection landed on the same replica")


def _uclient(stack: Stack, username: str, credential: str) -> str:
    command = [tool("turnutils_uclient"), "-v", "-y", "-n", "1", "-m", "1"]
    command += ["-p", str(stack.turn_port), "-u", username, "-w", credential, "127.0.0.1"]
    result = run(command, timeout=30)
    return result.stdout + result.stderr


def test_coturn_allocates_with_credentials_from_ice_servers(stack: Stack) -> None:
    response = stack.get("/api/ice-servers")
    assert response.getheader("Cache-Control") == "no-store"
    connection = stack.https()
    connection.request("GET", "/api/ice-servers")
    servers = json.loads(connection.getresponse().read())["iceServers"]
    (turn,) = [server for server in servers if "credential" in server]
    assert turn["urls"] == [f"turn:127.0.0.1:{stack.turn_port}?transport=udp"]

    output = _uclient(stack, turn["username"], turn["credential"])
    assert "Received relay addr: 127.0.0.1:" in output, output
    # The shipped denied-peer-ip ranges keep the relay out of loopback (and private) networks.
    assert "403 (Forbidden IP)" in output, output

    refused = _uclient(stack, turn["username"], "not-the-credential")
    assert "Received relay addr" not in refused, refused


def test_metrics_stay_off_the_edge_and_need_the_token_on_a_replica(stack: Stack) -> None:
    assert stack.get("/api/metrics").status == 404
    assert stack.get("/api/metrics?format=text").status == 404
    replica = stack.replicas[0]
    assert _metrics(replica)[0] == 200
    assert _metrics(replica, token=None)[0] in (401, 403)


def _health_check(
    *args: str, token: str | None = METRICS_TOKEN
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **({"METRICS_TOKEN": token} if token else {})}
    return run([HEALTH_CHECK, *args], env=env)


def test_health_check_through_the_edge_by_host_name_and_on_a_replica_with_a_token(
    stack: Stack,
) -> None:
    edge = _health_check(
        f"https://{nginx.HOST_NAME}:{stack.https_port}",
        "--edge",
        "--connect-to",
        "127.0.0.1",
        "--cacert",
        str(stack.certificate),
    )
    assert edge.returncode == 0, edge.stdout + edge.stderr
    assert "metrics not public (/api/metrics refused at the edge): HTTP 404" in edge.stdout
    # The certificate is checked against the host name: another name fails.
    wrong_name = _health_check(
        f"https://tallow.invalid:{stack.https_port}",
        "--edge",
        "--connect-to",
        "127.0.0.1",
        "--cacert",
        str(stack.certificate),
    )
    assert wrong_name.returncode == 1
    replica = stack.replicas[-1].url
    direct = _health_check(replica)
    assert direct.returncode == 0 and "metrics (/api/metrics): HTTP 200" in direct.stdout
    without_token = _health_check(replica, token=None)
    assert without_token.returncode == 1 and "FAIL metrics" in without_token.stdout


def test_health_check_prod_as_the_seed_writes_it(stack: Stack, tmp_path: Path) -> None:
    """`scripts/health-check.sh prod` finds the public host and port in .env (a copy here)."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts", symlinks=True)
    origins = f"https://{nginx.HOST_NAME},https://other.example"
    (tmp_path / ".env").write_text(f"ALLOWED_ORIGINS={origins}\nHTTPS_PORT={stack.https_port}\n")
    script = str(tmp_path / "scripts" / "health-check.sh")
    result = run(
        [script, "prod", "--cacert", str(stack.certificate)], env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"checking https://{nginx.HOST_NAME}:{stack.https_port} (at 127.0.0.1)" in result.stdout


def test_a_replaced_replica_takes_traffic_without_restarting_nginx(stack: Stack) -> None:
    """An image update recreates a replica with a new address behind the same name."""
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:  # ~20 requests/s of the UI, within nginx's per-client page limit
        while not stop.is_set():
            statuses.append(stack.get("/", {"X-Request-ID": f"load-{len(statuses)}"}).status)
            time.sleep(0.05)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        time.sleep(1)
        old = stack.replicas[0]
        new = stack.start_replica("127.0.0.4")
        stack.route_to([new, stack.replicas[1]])
        old.kill()
        stack.replicas[0] = new
        time.sleep(3)
    finally:
        stop.set()
        loader.join()
    assert len(statuses) > 40 and set(statuses) == {200}, statuses
    served = [e for e in new.log_entries() if str(e.get("request_id", "")).startswith("load-")]
    assert served, "nginx never sent a request to the new replica"


def test_rate_limit_answers_429(stack: Stack) -> None:
    # Runs last in this module: it uses up this client's burst for /api/.
    connection = stack.https()
    statuses = []
    for _ in range(100):
        connection.request("GET", "/api/health")
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        if response.status == 429:
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses

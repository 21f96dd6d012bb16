"""Running the shipped nginx.conf here: test certificates and a private mount namespace.

nginx.conf names its upstreams by Compose service name (web, signaling) and keeps pid, temp
files and cache under /tmp. `unshare --mount` gives nginx its own view of the machine in which
/etc/hosts maps those names to loopback and /tmp is a scratch folder, so the shipped file runs
unchanged and nothing outside the test's folder is touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.deployment.tools import assert_succeeds, run, tool

HOSTS = "127.0.0.1 localhost web signaling\n::1 localhost\n"
# A public-looking host name the test certificates also carry (health checks pin it to loopback).
HOST_NAME = "tallow.test"
# $1 is the test folder; the rest is the nginx command line.
NAMESPACE_SCRIPT = (
    'mount --bind "$1" /mnt && mount --bind /mnt/hosts /etc/hosts && '
    'mount --bind /mnt/scratch /tmp && shift && exec "$@"'
)


def make_certificate(directory: Path, name: str = "tls") -> Path:
    """A self-signed certificate for 127.0.0.1, localhost and HOST_NAME; returns the .crt path."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    command = [tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt"]
    command += ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    command += ["-addext", f"subjectAltName=DNS:localhost,DNS:{HOST_NAME},IP:127.0.0.1"]
    assert_succeeds(run([*command, "-keyout", str(key), "-out", str(crt)]))
    return crt


def prepare(folder: Path, conf_text: str) -> Path:
    """Lay out folder/conf (nginx.conf, mime.types, certs/), folder/scratch and folder/hosts."""
    conf = folder / "conf"
    conf.mkdir(parents=True)
    (conf / "nginx.conf").write_text(conf_text)
    shutil.copy("/etc/nginx/mime.types", conf / "mime.types")
    make_certificate(conf / "certs")
    (folder / "scratch").mkdir()
    (folder / "hosts").write_text(HOSTS)
    return conf / "certs" / "tls.crt"


def command(folder: Path, *nginx_args: str) -> list[str]:
    """nginx with /mnt/conf/nginx.conf, in a mount namespace laid out from `folder`."""
    nginx = [tool("nginx"), "-c", "/mnt/conf/nginx.conf", *nginx_args]
    return [tool("unshare"), "--mount", "sh", "-c", NAMESPACE_SCRIPT, "sh", str(folder), *nginx]

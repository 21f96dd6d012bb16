"""Post-quantum self-test: proves at start-up that this process has working ML-KEM and ML-DSA.

The server never performs key agreement for users (browsers do that end to end); readiness
reports whether the PQC library the operator chose works on this machine, with its algorithms.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import time
from pathlib import Path

import attrs

from tallow.config import ConfigError


@attrs.frozen
class SelfTest:
    backend: str
    algorithms: tuple[str, ...]
    ok: bool
    detail: str
    seconds: float


def _cryptography_round_trip() -> None:
    from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

    decapsulation_key = mlkem.MLKEM768PrivateKey.generate()
    shared, ciphertext = decapsulation_key.public_key().encapsulate()
    # Not measured: only a broken cryptography build fails this check.
    if decapsulation_key.decapsulate(ciphertext) != shared or len(shared) != 32:  # pragma: no cover
        raise RuntimeError("ML-KEM-768 decapsulation did not recover the shared secret")
    signing_key = mldsa.MLDSA65PrivateKey.generate()
    message = b"tallow readiness self-test"
    signing_key.public_key().verify(signing_key.sign(message), message)


# Not measured: the test environment has no liboqs (importing liboqs-python without the C library
# tries to build it, then exits), so the liboqs backend's self-test cannot run there.
def _liboqs_round_trip() -> None:  # pragma: no cover
    import oqs  # guarded by ensure_available(): only imported once liboqs is known to load

    with oqs.KeyEncapsulation("ML-KEM-768") as receiver:
        public_key = receiver.generate_keypair()
        with oqs.KeyEncapsulation("ML-KEM-768") as sender:
            ciphertext, shared = sender.encap_secret(public_key)
        if receiver.decap_secret(ciphertext) != shared:
            raise RuntimeError("ML-KEM-768 decapsulation did not recover the shared secret")
    with oqs.Signature("ML-DSA-65") as signer:
        public_key = signer.generate_keypair()
        message = b"tallow readiness self-test"
        if not signer.verify(message, signer.sign(message), public_key):
            raise RuntimeError("ML-DSA-65 signature did not verify")


_ROUND_TRIPS = {"cryptography": _cryptography_round_trip, "liboqs": _liboqs_round_trip}
ALGORITHMS = ("ML-KEM-768", "ML-DSA-65")


def ensure_available(backend: str) -> None:
    """Fail fast, with a clear message, when the chosen backend cannot work here.

    liboqs-python tries to download and build liboqs when it is imported without the C library,
    then exits the interpreter; so it is never imported before the library is known to load.
    """
    if backend != "liboqs":
        return
    if importlib.util.find_spec("oqs") is None:
        raise ConfigError(
            "TALLOW_PQC_BACKEND: liboqs selected but the liboqs-python package is not installed "
            "(pip install liboqs-python, or use TALLOW_PQC_BACKEND=cryptography)"
        )
    install = os.environ.get("OQS_INSTALL_PATH")
    candidates = [Path(install) / "lib" / "liboqs.so"] if install else []
    if not any(path.exists() for path in candidates) and ctypes.util.find_library("oqs") is None:
        raise ConfigError(
            "TALLOW_PQC_BACKEND: liboqs selected but the liboqs shared library was not found "
            "(install liboqs and set OQS_INSTALL_PATH, or use TALLOW_PQC_BACKEND=cryptography)"
        )


def self_test(backend: str) -> SelfTest:
    """Run one ML-KEM-768 encapsulate/decapsulate and one ML-DSA-65 sign/verify round trip."""
    started = time.perf_counter()
    try:
        _ROUND_TRIPS[backend]()
    except Exception as error:
        return SelfTest(
            backend,
            ALGORITHMS,
            False,
            f"{type(error).__name__}: {error}",
            time.perf_counter() - started,
        )
    return SelfTest(backend, ALGORITHMS, True, "round trips passed", time.perf_counter() - started)

"""Types for the parts of liboqs-python that tallow.pqc uses (the package ships none).

liboqs-python is optional and absent from the test environment (importing it without the liboqs
C library tries to build the library and exits), so these stubs also let the type checker see
tallow.pqc's liboqs backend without the package installed.
"""

from types import TracebackType
from typing import Self

class _Mechanism:
    """What KeyEncapsulation and Signature have in common (a shape here, not a real base)."""

    def __init__(self, alg_name: str, secret_key: bytes | None = None) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    def generate_keypair(self) -> bytes: ...

class KeyEncapsulation(_Mechanism):
    def encap_secret(self, public_key: bytes) -> tuple[bytes, bytes]: ...
    def decap_secret(self, ciphertext: bytes) -> bytes: ...

class Signature(_Mechanism):
    def sign(self, message: bytes) -> bytes: ...
    def verify(self, message: bytes, signature: bytes, public_key: bytes) -> bool: ...

"""A throwaway certificate authority for serving the emulator over HTTPS.

Production clients insist on https, so the emulator must be able to speak it without touching
the system trust store: tests trust this one CA explicitly. The keys are P-256, which take
microseconds to make, where RSA would slow every emulator down. uvicorn wants files, so the PEMs
go into a private temporary directory that lives only while the server needs it.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["TLSFiles", "TLSMaterial"]

_LIFETIME = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Paths of the PEM files uvicorn and clients read."""

    ca_bundle: str
    certfile: str
    keyfile: str


class TLSMaterial:
    """A CA and a server certificate for the loopback names, held in memory."""

    def __init__(self, hosts: Iterable[str] = ()) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("entra-guard emulator test CA")
        ca_cert = (
            _builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = (
            _builder(_name("localhost"), ca_name, server_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self._cert_pem = server_cert.public_bytes(serialization.Encoding.PEM)
        self._key_pem = server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._files: TLSFiles | None = None
        self._cleanup: weakref.finalize[[str], TLSMaterial] | None = None

    def files(self) -> TLSFiles:
        """The PEM files, written on first use (again after :meth:`cleanup`)."""
        if self._files is None or not Path(self._files.ca_bundle).exists():
            directory = tempfile.mkdtemp(prefix="entra-emulator-")  # private: mode 0700
            files = TLSFiles(
                ca_bundle=str(Path(directory, "ca.pem")),
                certfile=str(Path(directory, "server.pem")),
                keyfile=str(Path(directory, "server.key")),
            )
            Path(files.ca_bundle).write_bytes(self.ca_pem)
            Path(files.certfile).write_bytes(self._cert_pem)
            Path(files.keyfile).write_bytes(self._key_pem)
            # Removes the directory when this object is collected, should nobody call cleanup().
            self._cleanup = weakref.finalize(self, _remove, directory)
            self._files = files
        return self._files

    def cleanup(self) -> None:
        """Delete the files; :meth:`files` writes them anew if asked."""
        if self._cleanup is not None:
            self._cleanup()
        self._cleanup = None
        self._files = None

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA only; built from memory, so it needs no files."""
        return ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))


def _remove(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """127.0.0.1 and localhost always; any other bind host too, as an IP or a DNS name."""
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    for host in hosts:
        try:
            address = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name: x509.GeneralName = x509.DNSName(host)
        else:
            name = address
        if name not in names:
            names.append(name)
    return names

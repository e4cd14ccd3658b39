"""TLS of the node agent: a key of the node's own, its certificate pinned by every caller.

A node worker makes a fresh key pair and a self-signed certificate each time it
starts (:func:`agent_certificate_generate`); the key never leaves the worker's
memory, the certificate goes on the node's row when the worker registers. A
caller trusts exactly that certificate for that node (:func:`agent_client_context`):
no other key, not even another node's, can answer for it, so nothing in between
can read or change the traffic. Callers prove themselves with the node's secret
(``Authorization: Bearer``), which TLS keeps private. The database the rows live
in is the trust root, as it already is for everything else the platform's
processes share.

Plain HTTP is only for a single machine: the agent refuses it on any address but
the loopback (``DEVBENCH_NODE_AGENT_TLS=false``), and callers refuse a plain URL
to any other host.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# A client that does not finish its handshake in this time is dropped.
HANDSHAKE_TIMEOUT_S = 10
_VALID_FOR = datetime.timedelta(days=3650)  # the certificate lives as long as its worker


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def agent_certificate_generate(*, node: str) -> tuple[str, bytes]:
    """A new key and a self-signed certificate for node ``node``: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks of hosts differ a bit
        .not_valid_after(now + _VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def certificate_fingerprint(cert_pem: str) -> str:
    """SHA-256 of the certificate, as operators compare it (``AB:CD:...``)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def agent_server_context(*, cert_pem: str, key_pem: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No session tickets: nothing arrives after the handshake that the shell's two
    # threads (one reading, one writing the same connection) would have to share.
    context.num_tickets = 0
    # ``load_cert_chain`` reads files only: an anonymous in-memory file keeps the key off disk.
    fd = os.memfd_create("devbench-agent-key", os.MFD_CLOEXEC)
    try:
        os.write(fd, cert_pem.encode() + b"\n" + key_pem)
        context.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    return context


def agent_client_context(*, cert_pem: str) -> ssl.SSLContext:
    """A context that accepts only the peer holding the key of ``cert_pem``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # The pin is the whole trust store; the name the caller dials (an address that NAT,
    # DNS or the operator chose) proves nothing more, so it is not checked.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=cert_pem)
    return context


def shutdown_socket(sock: socket.socket, how: int) -> None:
    """Shut a (TLS) socket's TCP connection down in direction ``how``.

    ``SSLSocket.shutdown`` also drops the TLS layer, so another thread still reading
    would get raw ciphertext; shutting the TCP socket under it ends the peer's reads
    (an EOF without close_notify, which readers take as the end) and leaves ours intact.
    """
    socket.socket.shutdown(sock, how)

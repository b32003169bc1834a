#!/usr/bin/env python3
"""Writes a private key in cosign's encrypted key format, independently of
plinth's Rust code, to produce test vectors.

Format (go-securesystemslib `encrypted`, used by cosign's `pkg/cosign/keys.go`):
PEM label "ENCRYPTED SIGSTORE PRIVATE KEY" (older cosign: "ENCRYPTED COSIGN
PRIVATE KEY"); the body is JSON, keys in Go struct order:
  {"kdf":{"name":"scrypt","params":{"N":N,"r":8,"p":1},"salt":B64},
   "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}
key = scrypt(password, salt, N, r, p, 32); ciphertext = secretbox(tag||ct)
of the PKCS#8 DER private key; base64 is standard with padding; PEM lines 64.

usage: cosign_key.py PKCS8_PEM PASSWORD SALT_HEX NONCE_HEX N LABEL > out.pem
"""
import base64
import hashlib
import json
import sys

import nacl.secret
from cryptography.hazmat.primitives import serialization


def main() -> None:
    pem_path, password, salt_hex, nonce_hex, n, label = sys.argv[1:7]
    with open(pem_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce, n = bytes.fromhex(salt_hex), bytes.fromhex(nonce_hex), int(n)
    box_key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=8, p=1, maxmem=256 * 1024 * 1024, dklen=32)
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce)
    b64 = lambda b: base64.b64encode(b).decode()
    doc = {
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed.ciphertext),  # tag || ciphertext, without the nonce
    }
    body = base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    sys.stdout.write(f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n")


if __name__ == "__main__":
    main()

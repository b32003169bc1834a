#!/usr/bin/env python3
"""Verifies cosign's legacy ("simple signing") signature of an image in a
registry, written from cosign's specs/SIGNATURE_SPEC.md and the OCI
distribution API alone, with PyPI `cryptography` (OpenSSL) for ECDSA. It
shares no code with plinth: another language, another JSON parser, another
HTTP client, another crypto library.

usage: verify_legacy.py REGISTRY_URL REPOSITORY REFERENCE PUBKEY_PEM

  REGISTRY_URL  http://127.0.0.1:5000 (the tests use a loopback registry)
  REPOSITORY    golden/static-debian13
  REFERENCE     a tag (latest, latest-amd64) or a digest

Steps:
  1. GET the manifest REFERENCE points at; its digest D is the sha256 of
     the bytes served (and must equal Docker-Content-Digest when sent).
  2. GET the manifest tagged sha256-<hex of D>.sig.
  3. For each layer of media type application/vnd.dev.cosign.simplesigning.v1+json:
     GET the blob, check its sha256 and size against the descriptor,
     base64-decode the dev.cosignproject.cosign/signature annotation and
     verify it as an ASN.1 ECDSA P-256 signature over SHA-256 of the blob
     with the public key; parse the blob and require critical.type
     "cosign container image signature", critical.image.docker-manifest-digest
     == D and critical.identity.docker-reference == HOST/REPOSITORY.
  4. Accept if at least one layer passes every check (other signers' layers
     are skipped, as cosign does).
Prints one line; exits 0 (OK) or 1 (FAIL).
"""
import base64
import binascii
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_TYPE = "cosign container image signature"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class Fail(Exception):
    pass


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None, None
        raise Fail(f"GET {url}: HTTP {e.code}")


def check(registry, repository, reference, pubkey_path):
    with open(pubkey_path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise Fail("the public key is not ECDSA P-256")
    base = f"{registry}/v2/{repository}"
    body, headers = get(f"{base}/manifests/{reference}", ACCEPT)
    if body is None:
        raise Fail(f"{repository}:{reference} does not exist")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    served = headers.get("Docker-Content-Digest")
    if served and served != digest:
        raise Fail(f"the registry says {served}, the bytes are {digest}")
    sig_tag = digest.replace(":", "-", 1) + ".sig"
    body, _ = get(f"{base}/manifests/{sig_tag}", ACCEPT)
    if body is None:
        raise Fail(f"no {sig_tag}: {repository}:{reference} is unsigned")
    manifest = json.loads(body)
    host = urllib.parse.urlsplit(registry).netloc
    reasons = []
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") != MEDIA_TYPE:
            reasons.append(f"layer of media type {layer.get('mediaType')}")
            continue
        blob, _ = get(f"{base}/blobs/{layer['digest']}")
        if blob is None:
            reasons.append(f"blob {layer['digest']} missing")
            continue
        if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"] or len(blob) != layer["size"]:
            reasons.append("payload does not match its descriptor")
            continue
        try:
            der = base64.b64decode(layer.get("annotations", {}).get(ANNOTATION, ""), validate=True)
            key.verify(der, blob, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, InvalidSignature, ValueError):
            reasons.append("signature does not verify with the key")
            continue
        try:
            critical = json.loads(blob)["critical"]
            kind = critical["type"]
            named = critical["image"]["docker-manifest-digest"]
            claimed = critical["identity"]["docker-reference"]
        except (ValueError, KeyError, TypeError) as e:
            reasons.append(f"payload is not a simple signing document ({e!r})")
            continue
        if kind != COSIGN_TYPE:
            reasons.append(f"critical.type is {kind!r}")
        elif named != digest:
            reasons.append(f"payload names {named}, not {digest}")
        elif claimed != f"{host}/{repository}":
            reasons.append(f"payload claims {claimed!r}, not {host}/{repository}")
        else:
            return f"OK cosign signature of {repository}:{reference} ({digest}) by the key"
    raise Fail("; ".join(reasons) or f"{sig_tag} has no layers")


def main():
    if len(sys.argv) != 5:
        print("FAIL usage: verify_legacy.py REGISTRY_URL REPOSITORY REFERENCE PUBKEY_PEM")
        sys.exit(2)
    try:
        print(check(*sys.argv[1:5]))
    except (Fail, OSError, ValueError) as e:
        print(f"FAIL {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()

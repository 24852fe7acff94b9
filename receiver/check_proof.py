"""Check a guest's signed proof offline, with the receiver's published keys: for auditors.

Standalone on purpose (Python 3.10+ and the ``cryptography`` package, nothing of the receiver), so
an auditor can copy this one file and run it where the receiver is not installed:

    python check_proof.py proof-grand-signed.json receipt-keys.json
    python check_proof.py proof.json receipt-keys.json --headers proof.headers

- ``proof-<tenant>-signed.json`` is what the console's "Download the proof with its signature"
  gives: ``{"webhook-id", "webhook-timestamp", "webhook-signature", "body"}``, ``body`` being the
  exact text that ``GET /v1/proof`` signs.
- Or the bytes of ``GET /v1/proof`` and its response headers as ``curl -D proof.headers -o
  proof.json`` saves them.
- ``receipt-keys.json`` is ``GET /.well-known/receipt-keys`` (a JWK Set of Ed25519 keys), fetched
  from the receiver or handed over by its operator.

The ``v1a`` entry of ``webhook-signature`` is an Ed25519 signature over ``"{id}.{timestamp}.{body}"``
(contract, "Signed acknowledgements"). Exit 0 and ``signature ok`` when a published key made it,
exit 1 naming what does not match otherwise.
"""

import argparse
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def read_headers(text: str) -> dict[str, str]:
    """The webhook-* headers of an HTTP response as ``curl -D`` saves it (the last response's)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in HEADERS:
            found[name.strip().lower()] = value.strip()
    return found


def public_keys(jwks: dict) -> dict[str, Ed25519PublicKey]:
    """{kid: key} of the Ed25519 keys of a JWK Set."""
    keys = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            keys[jwk.get("kid", "?")] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def check(body: bytes, headers: dict[str, str], jwks: dict) -> str:
    """The kid of the published key that signed ``body``; ValueError saying what does not match."""
    missing = [name for name in HEADERS if not headers.get(name)]
    if missing:
        raise ValueError(f"no {missing[0]} header: the signature was not saved with the proof")
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    signatures = [entry[4:] for entry in headers["webhook-signature"].split() if entry.startswith("v1a,")]
    if not signatures:
        raise ValueError("webhook-signature has no v1a (Ed25519) entry")
    keys = public_keys(jwks)
    if not keys:
        raise ValueError("the key set holds no Ed25519 key")
    for signature in signatures:
        for kid, key in keys.items():
            try:
                key.verify(base64.b64decode(signature), content)
            except (InvalidSignature, ValueError):
                continue
            return kid
    raise ValueError("the signature does not match the proof with any published key: "
                     "the file was changed, or it was signed with another key")


def load(proof_path: str, headers_path: str | None) -> tuple[bytes, dict[str, str]]:
    with open(proof_path, "rb") as file:
        raw = file.read()
    if headers_path is not None:
        with open(headers_path, encoding="latin-1") as file:
            return raw, read_headers(file.read())
    bundle = json.loads(raw)
    if not isinstance(bundle, dict) or not isinstance(bundle.get("body"), str):
        raise ValueError("not a proof with its signature: give the response headers with --headers")
    return bundle["body"].encode("utf-8"), {name: str(bundle.get(name) or "") for name in HEADERS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a receiver proof's Ed25519 signature offline.")
    parser.add_argument("proof", help="proof-<tenant>-signed.json, or the body of GET /v1/proof with --headers")
    parser.add_argument("keys", help="the JWK Set of GET /.well-known/receipt-keys, saved as a file")
    parser.add_argument("--headers", help="the response headers saved with the body (curl -D FILE)")
    args = parser.parse_args(argv)
    try:
        body, headers = load(args.proof, args.headers)
        with open(args.keys, "rb") as file:
            kid = check(body, headers, json.load(file))
        document = json.loads(body)
    except (OSError, ValueError) as exc:
        print(f"check_proof: {exc}", file=sys.stderr)
        return 1
    print(f"signature ok: key {kid}, proof of tenant {document.get('tenant')} "
          f"generated {document.get('generated_at')} (webhook-id {headers['webhook-id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

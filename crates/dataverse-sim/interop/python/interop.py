"""Interop check with Microsoft's own Python stack: azure-identity's ClientSecretCredential (MSAL underneath) gets
the token, PowerPlatform-Dataverse-Client talks to the Web API. Both are independent of this project, so a behaviour
the emulator and our Rust client got wrong the same way still shows up.

Settings (environment): DATAVERSE_URL (the emulator's instance URL), DATAVERSE_AUTHORITY (its Azure AD authority
host, the same URL), DATAVERSE_TENANT_ID, DATAVERSE_CLIENT_ID, DATAVERSE_CLIENT_SECRET, EXPECTED_CONTACTS.
REQUESTS_CA_BUNDLE points at the emulator's CA. Exits non-zero with what it expected and got on the first mismatch.
"""

import json
import os
import sys

import jwt
import requests
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient

URL = os.environ["DATAVERSE_URL"].rstrip("/")
AUTHORITY = os.environ.get("DATAVERSE_AUTHORITY", URL).rstrip("/")
TENANT = os.environ.get("DATAVERSE_TENANT_ID", "7d3a7f8e-0b4c-4a6e-9c51-2f1e5d4c3b2a")
CLIENT = os.environ.get("DATAVERSE_CLIENT_ID", "2b9c4e1a-6f3d-4c8b-a7e5-9d0f1e2c3b4a")
SECRET = os.environ.get("DATAVERSE_CLIENT_SECRET", "dataverse-sim-secret")
EXPECTED = int(os.environ.get("EXPECTED_CONTACTS", "0"))


def check(condition, what, got=None):
    if not condition:
        print(f"python interop: FAILED: {what}" + (f" (got {got!r})" if got is not None else ""), file=sys.stderr)
        sys.exit(1)


def token_through_msal(credential):
    """MSAL reads the v2.0 discovery document, posts to its token endpoint; the token verifies against the JWKS."""
    scope = f"{URL}/.default"
    token = credential.get_token(scope).token
    discovery = requests.get(f"{AUTHORITY}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=30).json()
    check(discovery["issuer"] == f"{AUTHORITY}/{TENANT}/v2.0", "the discovery document's issuer", discovery["issuer"])
    jwks = requests.get(discovery["jwks_uri"], timeout=30).json()
    header = jwt.get_unverified_header(token)
    check(header["alg"] == "RS256", "an RS256 token", header)
    keys = {k["kid"]: k for k in jwks["keys"]}
    check(header["kid"] in keys, "the token's kid in the JWKS", header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(keys[header["kid"]]).key,
        algorithms=["RS256"],
        audience=URL,
        issuer=discovery["issuer"],
    )
    for claim in ["aud", "iss", "tid", "azp", "oid", "sub", "idtyp", "ver", "exp", "iat", "nbf"]:
        check(claim in claims, f"claim {claim} in the token", sorted(claims))
    check(claims["tid"] == TENANT and claims["azp"] == CLIENT, "tid and azp name the tenant and app", claims)
    check(claims["idtyp"] == "app" and claims["ver"] == "2.0", "an app-only v2.0 token", claims)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    try:
        jwt.decode(tampered, jwt.PyJWK(keys[header["kid"]]).key, algorithms=["RS256"], audience=URL)
        check(False, "a tampered token to fail verification")
    except jwt.InvalidSignatureError:
        pass
    return f"token through MSAL from {discovery['token_endpoint']}, RS256-verified against {discovery['jwks_uri']}"


def main():
    credential = ClientSecretCredential(
        TENANT,
        CLIENT,
        SECRET,
        authority=AUTHORITY,
        disable_instance_discovery=True,
    )
    lines = [token_through_msal(credential)]
    client = DataverseClient(URL, credential)

    # Table metadata.
    info = client.tables.get("contact")
    check(info is not None, "table metadata for contact")
    check(info["entity_set_name"] == "contacts", "the contact entity set", info["entity_set_name"])
    lines.append(f"metadata: contact is {info['entity_set_name']} ({info['metadata_id']})")

    # Create, update, retrieve.
    created = client.records.create("contact", {"firstname": "Interop", "lastname": "Python", "hlf_membernumber": "880001"})
    check(isinstance(created, str) and len(created) == 36, "a GUID from create", created)
    client.records.update("contact", created, {"mobilephone": "+47 400 00 001"})
    row = client.records.retrieve("contact", created, select=["firstname", "mobilephone", "hlf_membernumber"])
    check(row is not None and row["mobilephone"] == "+47 400 00 001", "the update read back", row)
    check(row["hlf_membernumber"] == "880001", "the created member number read back", row)
    missing = client.records.retrieve("contact", "00000000-0000-4000-8000-0000000000ff", select=["firstname"])
    check(missing is None, "None for a missing row", missing)
    lines.append(f"records: created {created}, updated and read back; a missing id reads as None")

    # Every contact across pages of 40, no repeats.
    seen = []
    pages = 0
    for page in client.records.list_pages("contact", select=["contactid", "hlf_membernumber"], page_size=40):
        pages += 1
        seen.extend(r["contactid"] for r in page)
    check(len(seen) == len(set(seen)), "no repeated rows across pages", len(seen) - len(set(seen)))
    if EXPECTED:
        check(len(seen) == EXPECTED + 1, f"{EXPECTED + 1} contacts across pages", len(seen))
    check(pages > 1, "more than one page", pages)
    filtered = client.records.list("contact", filter="hlf_membernumber eq '880001'", select=["contactid"])
    check(len(filtered) == 1, "one row for the created member number", len(filtered))
    lines.append(f"paging: {len(seen)} contacts in {pages} pages of 40 following @odata.nextLink; a filter finds 1")

    # A batch: a create, an update of the created row, a read, and a read of a missing row, continue-on-error.
    batch = client.batch.new()
    batch.records.create("contact", {"firstname": "Batch", "lastname": "Python", "hlf_membernumber": "880002"})
    batch.records.update("contact", created, {"mobilephone": "+47 400 00 002"})
    batch.records.retrieve("contact", created, select=["mobilephone"])
    batch.records.retrieve("contact", "00000000-0000-4000-8000-0000000000fe", select=["firstname"])
    result = batch.execute(continue_on_error=True)
    statuses = [r.status_code for r in result.responses]
    check(statuses[:3] == [204, 204, 200] and statuses[3] == 404, "statuses 204, 204, 200, 404", statuses)
    check(result.responses[2].data["mobilephone"] == "+47 400 00 002", "the batch's read sees its update", result.responses[2].data)
    check(result.responses[0].entity_id, "the created row's id from OData-EntityId", result.responses[0])
    lines.append(f"batch: {len(statuses)} operations with continue-on-error answered {statuses}")

    print(f"python interop: OK against {URL} with PowerPlatform-Dataverse-Client and azure-identity (MSAL)")
    for line in lines:
        print(f"  - {line}")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as error:  # noqa: BLE001 - report any client error as a failed check
        print(f"python interop: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)

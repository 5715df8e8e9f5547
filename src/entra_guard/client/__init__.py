"""Acquiring tokens from Entra ID: app-only (client credentials) and as a user (on-behalf-of).

For daemons and services that call APIs as themselves::

    client = ConfidentialClient(
        tenant_id="<tenant GUID>",
        client_id="<app's client id>",
        credential=ClientSecret(os.environ["CLIENT_SECRET"]),  # or ClientCertificate(...)
    )
    token = await client.acquire_token("api://orders/.default")
    httpx.AsyncClient(auth=client.auth("api://orders/.default"))  # or let httpx do it

For an API calling another API as the user who called it (the on-behalf-of grant)::

    obo = OnBehalfOfClient(client)  # client: this API's own ConfidentialClient
    httpx.AsyncClient(auth=obo.auth(incoming_token, "https://graph.microsoft.com/User.Read"))

The modules, each with one job::

    credentials   ClientSecret, ClientCertificate: the proof a request carries
    endpoint      one token request over httpx, with retries on transient failures
    tokens        AccessToken, reading a token response, when to renew
    confidential  ConfidentialClient: cache, one request per scope, stale-token fallback
    auth          EntraClientAuth: the httpx.Auth flow (renew once on 401)
    errors        TokenRequestError, the one exception a failed request raises
    on_behalf_of  OnBehalfOfClient, OnBehalfOfAuth: tokens for another API as the calling user
    challenges    reading a downstream API's claims challenge

Secrets, assertions and tokens never appear in a repr, a str, a log line or an exception;
logs name a token by its fingerprint (the first 8 hex digits of its SHA-256) at most.
"""

from entra_guard.client.auth import EntraClientAuth
from entra_guard.client.confidential import ConfidentialClient
from entra_guard.client.credentials import ClientCertificate, ClientSecret
from entra_guard.client.errors import TokenRequestError
from entra_guard.client.on_behalf_of import OnBehalfOfAuth, OnBehalfOfClient
from entra_guard.client.tokens import AccessToken

__all__ = [
    "AccessToken",
    "ClientCertificate",
    "ClientSecret",
    "ConfidentialClient",
    "EntraClientAuth",
    "OnBehalfOfAuth",
    "OnBehalfOfClient",
    "TokenRequestError",
]

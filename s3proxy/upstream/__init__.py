"""The upstream side: the proxy's own credentials, SigV4 signing and the HTTP client."""

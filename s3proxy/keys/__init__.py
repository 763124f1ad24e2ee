"""Keys: Vault authentication, Transit data keys, and the data-key caches."""

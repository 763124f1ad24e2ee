"""s3proxy: an S3 sidecar that encrypts object bodies with Vault Transit data keys."""

__version__ = "0.1.0"

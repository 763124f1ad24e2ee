"""The table of settings: each one's environment variable, flag, help and default."""

from __future__ import annotations

from dataclasses import dataclass

from s3proxy.core.sizes import DEFAULT_SEGMENT_SIZE


@dataclass(frozen=True)
class Setting:
    env: str
    flag: str
    help: str
    default: str | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("S3PROXY_LISTEN", "--listen", "address the proxy listens on", "127.0.0.1:8190"),
    Setting(
        "S3PROXY_TLS_LISTEN",
        "--tls-listen",
        "address of an HTTPS listener serving the same proxy, for clients that insist on TLS "
        "(same loopback rules as S3PROXY_LISTEN); none by default",
    ),
    Setting(
        "S3PROXY_TLS_CERT_FILE",
        "--tls-cert-file",
        "its certificate chain (PEM), re-read when the file changes (cert-manager); default: a "
        "certificate for localhost and 127.0.0.1 from a CA made at start",
    ),
    Setting("S3PROXY_TLS_KEY_FILE", "--tls-key-file", "the certificate's private key (PEM)"),
    Setting(
        "S3PROXY_TLS_CA_OUT",
        "--tls-ca-out",
        "without S3PROXY_TLS_CERT_FILE: where the CA made at start is written (PEM), for the "
        "workload to trust (repo1-storage-ca-file, rclone --ca-cert)",
    ),
    Setting(
        "S3PROXY_TLS_CA_BUNDLE_OUT",
        "--tls-ca-bundle-out",
        "... and where it is written followed by the CAs the proxy itself trusts (its system "
        "bundle), for AWS_CA_BUNDLE, which replaces an SDK's trusted CAs",
    ),
    Setting(
        "S3PROXY_S3_ENDPOINT",
        "--s3-endpoint",
        "upstream base URL (default: the AWS regional endpoint of the region)",
    ),
    Setting(
        "S3PROXY_S3_REGION",
        "--s3-region",
        "upstream signing region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1); "
        "'auto' for GCS",
    ),
    Setting(
        "S3PROXY_S3_ACCESS_KEY_ID",
        "--s3-access-key-id",
        "the proxy's own static upstream key (default: botocore's credential chain)",
    ),
    Setting(
        "S3PROXY_S3_SECRET_ACCESS_KEY",
        "--s3-secret-access-key",
        "secret of S3PROXY_S3_ACCESS_KEY_ID",
    ),
    Setting(
        "S3PROXY_S3_SECRET_ACCESS_KEY_FILE",
        "--s3-secret-access-key-file",
        "file holding S3PROXY_S3_SECRET_ACCESS_KEY (keeps it out of the environment and argv)",
    ),
    Setting("S3PROXY_S3_SESSION_TOKEN", "--s3-session-token", "session token of the static key"),
    Setting(
        "S3PROXY_S3_SESSION_TOKEN_FILE",
        "--s3-session-token-file",
        "file holding S3PROXY_S3_SESSION_TOKEN",
    ),
    Setting(
        "S3PROXY_S3_ROLE_ARN",
        "--s3-role-arn",
        "AssumeRole into this role with the credentials found first",
    ),
    Setting("S3PROXY_S3_EXTERNAL_ID", "--s3-external-id", "external ID for S3PROXY_S3_ROLE_ARN"),
    Setting(
        "S3PROXY_S3_ROLE_SESSION_NAME",
        "--s3-role-session-name",
        "session name for S3PROXY_S3_ROLE_ARN",
        "s3proxy",
    ),
    Setting(
        "S3PROXY_STS_ENDPOINT",
        "--sts-endpoint",
        "STS endpoint for the proxy's own credential calls (default: AWS's)",
    ),
    Setting(
        "S3PROXY_S3_CA_BUNDLE",
        "--s3-ca-bundle",
        "CA bundle (PEM) that signs the upstream's TLS certificate (default: system CAs)",
    ),
    Setting("S3PROXY_VAULT_TRANSIT_KEY", "--vault-transit-key", "transit key name (required)"),
    Setting(
        "S3PROXY_VAULT_TRANSIT_MOUNT", "--vault-transit-mount", "transit mount path", "transit"
    ),
    Setting("VAULT_ADDR", "--vault-addr", "Vault address (required)"),
    Setting(
        "S3PROXY_VAULT_AUTH",
        "--vault-auth",
        "token, kubernetes, jwt or approle",
        "token",
    ),
    Setting("VAULT_TOKEN", "--vault-token", "Vault token (auth 'token')"),
    Setting(
        "S3PROXY_VAULT_TOKEN_FILE",
        "--vault-token-file",
        "file holding the Vault token, re-read when the token is refused (auth 'token')",
    ),
    Setting("S3PROXY_VAULT_ROLE", "--vault-role", "role to log in as (kubernetes, jwt)"),
    Setting(
        "S3PROXY_VAULT_AUTH_MOUNT",
        "--vault-auth-mount",
        "auth method mount path (default: the method's name)",
    ),
    Setting(
        "S3PROXY_VAULT_JWT_FILE",
        "--vault-jwt-file",
        "service account JWT (kubernetes, jwt)",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ),
    Setting("S3PROXY_VAULT_ROLE_ID", "--vault-role-id", "AppRole role ID (approle)"),
    Setting("S3PROXY_VAULT_SECRET_ID", "--vault-secret-id", "AppRole secret ID (approle)"),
    Setting("S3PROXY_VAULT_SECRET_ID_FILE", "--vault-secret-id-file", "file holding the secret ID"),
    Setting("VAULT_CLIENT_CERT", "--vault-client-cert", "client certificate for Vault (PEM)"),
    Setting("VAULT_CLIENT_KEY", "--vault-client-key", "its private key (PEM)"),
    Setting(
        "S3PROXY_VAULT_CHECK_INTERVAL",
        "--vault-check-interval",
        "seconds between Vault reachability checks; writes fail while the last check failed",
        "5",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_SECONDS",
        "--datakey-reuse-seconds",
        "reuse one Vault data key for new objects this long (0: a data key per object)",
        "300",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_STREAMS",
        "--datakey-reuse-streams",
        "... for at most this many objects/parts",
        "100000",
    ),
    Setting(
        "S3PROXY_DATAKEY_REUSE_BYTES",
        "--datakey-reuse-bytes",
        "... and at most this many plaintext bytes",
        str(64 * 1024**3),
    ),
    Setting(
        "S3PROXY_KEY_CACHE_SECONDS",
        "--key-cache-seconds",
        "keep unwrapped data keys for reads this long (0: unwrap at every read)",
        "300",
    ),
    Setting(
        "S3PROXY_KEY_CACHE_ENTRIES",
        "--key-cache-entries",
        "... at most this many of them",
        "10000",
    ),
    Setting(
        "S3PROXY_METADATA_CACHE_URL",
        "--metadata-cache-url",
        "redis:// or rediss:// URL of a Redis or Valkey that the proxies of a transit key share "
        "as a cache of object metadata (user and password allowed); none by default",
    ),
    Setting(
        "S3PROXY_METADATA_CACHE_PASSWORD_FILE",
        "--metadata-cache-password-file",
        "file holding its password (instead of one in the URL)",
    ),
    Setting(
        "S3PROXY_METADATA_CACHE_CA_FILE",
        "--metadata-cache-ca-file",
        "CA bundle (PEM) for a rediss:// server's certificate (default: system CAs)",
    ),
    Setting(
        "S3PROXY_METADATA_CACHE_TIMEOUT",
        "--metadata-cache-timeout",
        "seconds a cache operation may take; then it counts as a miss and the cache is skipped "
        "for a few seconds",
        "0.25",
    ),
    Setting(
        "S3PROXY_METADATA_CACHE_TTL_SECONDS",
        "--metadata-cache-ttl-seconds",
        "seconds a cache entry lives",
        str(7 * 24 * 3600),
    ),
    Setting("VAULT_CACERT", "--vault-cacert", "CA bundle for Vault's TLS certificate"),
    Setting("VAULT_NAMESPACE", "--vault-namespace", "Vault namespace"),
    Setting(
        "S3PROXY_VAULT_TIMEOUT",
        "--vault-timeout",
        "seconds before a Vault call counts as failed",
        "10",
    ),
    Setting(
        "S3PROXY_VIRTUAL_HOST_SUFFIX",
        "--virtual-host-suffix",
        "comma-separated host suffixes for virtual-hosted style (bucket.<suffix>)",
        "localhost",
    ),
    Setting(
        "S3PROXY_ALLOWED_HOSTS",
        "--allowed-hosts",
        "comma-separated Host names accepted besides loopback names and virtual-host suffixes "
        "(e.g. a Service name); requests naming any other host get 403",
    ),
    Setting(
        "S3PROXY_CORS_ORIGINS",
        "--cors-origins",
        "comma-separated browser origins allowed cross-origin requests (the proxy answers CORS "
        "itself); none by default: requests with another Origin get 403",
    ),
    Setting(
        "S3PROXY_ALLOW_REMOTE_CLIENTS",
        "--allow-remote-clients",
        "'true' to listen on a non-loopback address; needs S3PROXY_CLIENT_AUTH=sigv4",
        "false",
    ),
    Setting(
        "S3PROXY_CLIENT_AUTH",
        "--client-auth",
        "'sigv4' checks each request's SigV4 signature (header, presigned, aws-chunked chunks) "
        "against the workload keys of S3PROXY_CLIENT_CREDENTIALS_FILE before re-signing; 'off' "
        "accepts any signature (loopback sidecar)",
        "off",
    ),
    Setting(
        "S3PROXY_CLIENT_CREDENTIALS_FILE",
        "--client-credentials-file",
        "file of workload keys for S3PROXY_CLIENT_AUTH=sigv4, one "
        "'ACCESS_KEY_ID SECRET_ACCESS_KEY' per line",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_OBJECTS",
        "--unencrypted-objects",
        "'refuse' answers 403 for objects written without the proxy (plaintext anyone with "
        "access to the bucket could have put there); 'allow' returns them as they are "
        "(migrations), narrowed by the next two settings",
        "refuse",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_PREFIXES",
        "--unencrypted-prefixes",
        "with 'allow': only objects under these comma-separated bucket/key-prefix entries",
    ),
    Setting(
        "S3PROXY_UNENCRYPTED_BEFORE",
        "--unencrypted-before",
        "with 'allow': only objects last modified before this ISO 8601 time",
    ),
    Setting(
        "S3PROXY_SEGMENT_SIZE",
        "--segment-size",
        "plaintext bytes per encrypted segment for new objects",
        str(DEFAULT_SEGMENT_SIZE),
    ),
    Setting(
        "S3PROXY_LIST_SIZES",
        "--list-sizes",
        "'exact' reports plaintext sizes and ETags in listings (two small reads per object "
        "not seen before, cached); 'stored' reports stored values with no extra requests",
        "exact",
    ),
    Setting(
        "S3PROXY_MULTIPART_MANIFEST",
        "--multipart-manifest",
        "'tagging' records each multipart object's list of parts, authenticated, as an object tag "
        "(needs s3:PutObjectTagging and s3:GetObjectTagging); 'off' for upstreams without object "
        "tagging (GCS): dropped or reordered parts then go undetected",
        "tagging",
    ),
    Setting(
        "S3PROXY_BIND_OBJECT_NAMES",
        "--bind-object-names",
        "'true' binds every stream written to its bucket and key, so ciphertext moved or copied "
        "under another name by the store fails to read; copies to another name are then "
        "re-encrypted through the proxy instead of copied by the store",
        "false",
    ),
    Setting(
        "S3PROXY_UNBOUND_OBJECTS",
        "--unbound-objects",
        "with S3PROXY_BIND_OBJECT_NAMES=true: 'refuse' fails the read of a stream not bound to "
        "its name (written before binding, or unbound ciphertext moved under a bound key); "
        "'allow' reads them (migrations), narrowed by the next two settings",
        "refuse",
    ),
    Setting(
        "S3PROXY_UNBOUND_PREFIXES",
        "--unbound-prefixes",
        "with 'allow': only objects under these comma-separated bucket/key-prefix entries",
    ),
    Setting(
        "S3PROXY_UNBOUND_BEFORE",
        "--unbound-before",
        "with 'allow': only objects last modified before this ISO 8601 time",
    ),
    Setting(
        "S3PROXY_MAX_REQUESTS",
        "--max-requests",
        "requests served at once; more are answered 503 SlowDown, as S3 does under load",
        "256",
    ),
    Setting(
        "S3PROXY_BODY_IDLE_TIMEOUT",
        "--body-idle-timeout",
        "seconds a request body may send nothing; then the request ends with 400 "
        "RequestTimeout and nothing is stored (S3 waits about 20)",
        "20",
    ),
    Setting(
        "S3PROXY_BODY_HELD_TIMEOUT",
        "--body-held-timeout",
        "seconds a body the proxy holds in memory (pass-through bodies up to 1 MiB, "
        "CompleteMultipartUpload, tagging) may take in all",
        "60",
    ),
    Setting(
        "S3PROXY_BODY_MEMORY",
        "--body-memory",
        "bytes of request bodies held in memory at once, per worker; a request that would "
        "pass it is answered 503 SlowDown at once",
        str(64 * 1024 * 1024),
    ),
    Setting(
        "S3PROXY_UPSTREAM_CHECKSUM",
        "--upstream-checksum",
        "how uploads go upstream so the store refuses damaged bytes: 'auto' learns what the "
        "store takes; crc32, crc32c or crc64nvme: an aws-chunked trailer checksum; 'signed': "
        "signed aws-chunked chunks (Ceph RGW before 18); 'off': none (GCS)",
        "auto",
    ),
    Setting("S3PROXY_LOG_LEVEL", "--log-level", "DEBUG, INFO, WARNING or ERROR", "INFO"),
    Setting(
        "S3PROXY_LOG_FORMAT",
        "--log-format",
        "'json': one JSON object a line (time, severity, message, request fields); 'text'",
        "json",
    ),
    Setting(
        "S3PROXY_ADMIN_LISTEN",
        "--admin-listen",
        "address of the admin listener (/startup, /liveness, /readiness, /metrics, "
        "/quitquitquit), reachable by the kubelet; 'off' for none",
        "0.0.0.0:8191",
    ),
    Setting(
        "S3PROXY_READINESS_REQUIRES_VAULT",
        "--readiness-requires-vault",
        "'true': /readiness fails while Vault is unreachable (a sidecar's readiness is the "
        "whole pod's; docs/operations.md)",
        "false",
    ),
    Setting(
        "S3PROXY_SHUTDOWN_DELAY",
        "--shutdown-delay",
        "seconds between SIGTERM (readiness fails at once) and closing the S3 listener",
        "0",
    ),
    Setting(
        "S3PROXY_WORKERS",
        "--workers",
        "worker processes sharing the listen ports (SO_REUSEPORT), each with its own event loop, "
        "Vault login and caches; 'auto': the container's CPU quota (cgroup), within the CPUs "
        "the process may run on; one without a quota",
        "auto",
    ),
    Setting(
        "S3PROXY_SHUTDOWN_GRACE",
        "--shutdown-grace",
        "seconds requests in flight may take to finish once the listener is closed; then they "
        "are cut and the process exits",
        "25",
    ),
)

# The proxy image: `docker build -t s3proxy .` then
# `docker run --network host -e S3PROXY_VAULT_TRANSIT_KEY=... -e VAULT_ADDR=... -e VAULT_TOKEN=... s3proxy serve`
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY s3proxy ./s3proxy
RUN pip install --no-cache-dir . && rm -rf /src
USER 65532:65532
ENTRYPOINT ["s3proxy"]
CMD ["serve"]

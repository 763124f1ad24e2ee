# The s3proxy image: `docker build -t s3proxy .`; README "Running it" has the `docker run` lines.
# Two stages: the builder makes a wheel and a virtualenv from it; the final stage is the slim
# Python base with that virtualenv only (no compiler, no pip in it), run as a numeric non-root
# user so `runAsNonRoot` can verify it, on a read-only root filesystem.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY s3proxy ./s3proxy
RUN python -m venv /opt/venv
RUN /opt/venv/bin/python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
RUN /opt/venv/bin/python -m pip install --no-cache-dir /wheels/s3proxy-*.whl
RUN /opt/venv/bin/python -m pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
# 8190: S3 (the proxy listens on 127.0.0.1 unless told otherwise); 8191: health and metrics.
EXPOSE 8190 8191
ENTRYPOINT ["s3proxy"]
CMD ["serve"]

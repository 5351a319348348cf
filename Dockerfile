# Standalone image for `docker run --rm -i … write`. It mirrors Airbyte's shared
# docker-images/Dockerfile.python-connector: the Python 3.11 connector base image, the package
# installed into /usr/local by a builder stage, a non-root user, and the console script
# `destination-heap-analytics` as the entry point.
# Build: docker build -t airbyte/destination-heap-analytics:dev .

ARG BASE_IMAGE=docker.io/airbyte/python-connector-base:4.0.2@sha256:9fdb1888c4264cf6fee473649ecb593f56f58e5d0096a87ee0b231777e2e3e73

FROM ${BASE_IMAGE} AS builder
WORKDIR /airbyte/integration_code
# What `pip install .` reads: the build backend (pyproject.toml), setup.py with the files it opens
# (README.md, LICENSE; the version is in the package), and the package. There is no Docker engine
# on our machines, so integration_tests/test_package.py builds the wheel from exactly these COPYs.
COPY pyproject.toml setup.py README.md LICENSE ./
COPY destination_heap_analytics ./destination_heap_analytics
RUN pip install --no-cache-dir .

FROM ${BASE_IMAGE}
WORKDIR /airbyte/integration_code
COPY --from=builder /usr/local /usr/local
COPY main.py ./
ENV TZ=Etc/UTC
USER airbyte
ENV AIRBYTE_ENTRYPOINT="destination-heap-analytics"
ENTRYPOINT ["destination-heap-analytics"]

LABEL io.airbyte.version=0.4.0
LABEL io.airbyte.name=airbyte/destination-heap-analytics

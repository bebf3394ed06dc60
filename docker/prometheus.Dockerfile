# Debian's Prometheus, for the local cluster (scripts/cluster.sh): the same
# base as the maskedkd images, so no registry is needed. The configuration
# and deploy/prometheus's rules are mounted by docker-compose.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["prometheus", "--storage.tsdb.path=/prometheus"]

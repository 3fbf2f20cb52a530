# Stand-in for redis:7, for `make compose-test` where no image registry can be reached: Debian bookworm's Redis 7.0
# on a base made by debootstrap (scripts/compose-test.sh). Like the official image it runs in /data and accepts
# connections from the other containers (protected mode off). Not for deployments.
ARG BASE_IMAGE=ecg-standin/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
USER redis
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]

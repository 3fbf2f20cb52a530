# Stand-in for postgres:16, for `make compose-test` where no image registry can be reached: Debian bookworm's
# PostgreSQL 15 on a base made by debootstrap (scripts/compose-test.sh), with the part of the official image's entry
# point that compose.yaml uses (POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB on an empty data folder, pg_isready).
# Not for deployments.
ARG BASE_IMAGE=ecg-standin/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]

# Stand-in for python:3.11-slim-bookworm, for `make compose-test` where no image registry can be reached: Debian
# bookworm's own Python 3.11 on a base made by debootstrap (scripts/compose-test.sh). Not for deployments.
ARG BASE_IMAGE=ecg-standin/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]

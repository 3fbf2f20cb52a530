# Stand-in for mcr.microsoft.com/azure-storage/azurite:3.35.0, for `make compose-test` where no image registry can be
# reached: Azurite 3.35.0 from the npm registry on Debian bookworm's Node.js, on a base made by debootstrap
# (scripts/compose-test.sh). `azurite-blob` and `node` are on PATH, as in the official image. Not for deployments.
ARG BASE_IMAGE=ecg-standin/debian:bookworm

FROM ${BASE_IMAGE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
RUN npm install --global --no-audit --no-fund --loglevel=error --prefix /opt/azurite azurite@3.35.0

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends nodejs && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/azurite /opt/azurite
ENV PATH=/opt/azurite/bin:$PATH
WORKDIR /opt/azurite
EXPOSE 10000
CMD ["azurite-blob", "--blobHost", "0.0.0.0", "--location", "/data"]

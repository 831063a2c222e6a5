# A stand-in for the official rust:1-bookworm image, for machines that cannot
# pull it (docker/test-docker.sh builds it when DOCKER_BASES=local): a Debian
# base, the C toolchain the official image has, and a Rust toolchain copied from
# the build context (docker/test-docker.sh puts the host's `rustc --print sysroot`
# there) in the official image's layout: the toolchain under
# /usr/local/rustup/toolchains, its commands in /usr/local/cargo/bin, with
# RUSTUP_HOME and CARGO_HOME set as there. There is no rustup: nothing is
# downloaded, and a `COPY --from` of /usr/local/cargo and /usr/local/rustup
# (docker/Dockerfile does that) gets a working cargo, as from the official image.
ARG DEBIAN_IMAGE=debian:bookworm
FROM ${DEBIAN_IMAGE}

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl git gcc g++ libc6-dev make pkg-config xz-utils \
 && rm -rf /var/lib/apt/lists/*

ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
ARG TOOLCHAIN=stable-x86_64-unknown-linux-gnu
COPY toolchain/ /usr/local/rustup/toolchains/${TOOLCHAIN}/
RUN mkdir -p /usr/local/cargo/bin \
 && for b in /usr/local/rustup/toolchains/${TOOLCHAIN}/bin/*; do ln -s "$b" /usr/local/cargo/bin/; done \
 && cargo --version && rustc --version

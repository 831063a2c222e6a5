# Builds the module against the vendored nginx and runs `make test` with
# OpenResty's real Test::Nginx from CPAN (the t/lib/fallback runner then stays unused).
#
#   docker build -t ngx-shared-map .
#   docker run --rm ngx-shared-map
FROM rust:1-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libclang-dev libpcre2-dev zlib1g-dev libssl-dev pkg-config make curl \
      cpanminus libtest-base-perl libtext-diff-perl libwww-perl libipc-run-perl \
      python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*

# The real Test::Nginx::Socket, and the Prometheus parser the API tests read with.
RUN cpanm --notest Test::Nginx \
 && pip3 install --no-cache-dir --break-system-packages prometheus_client

WORKDIR /src
COPY . .
RUN make build

CMD ["make", "test"]

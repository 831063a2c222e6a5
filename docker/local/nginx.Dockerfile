# A stand-in for the official nginx image (nginx:stable, nginx:mainline), for
# machines that cannot pull it (docker/test-docker.sh builds it when
# DOCKER_BASES=local): the release tarball from the build context, configured
# with the arguments the official image's `nginx -V` prints, installed where
# nginx.org's package installs it, with a configuration laid out as the
# package's (nginx.conf including conf.d/*.conf, a default server on port 80),
# and curl, as the official image has. docker/Dockerfile builds the module for
# it exactly as for the official image.
ARG DEBIAN_IMAGE=debian:bookworm
FROM ${DEBIAN_IMAGE} AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make libc6-dev libpcre2-dev zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*

ARG NGINX_VERSION
COPY nginx-${NGINX_VERSION}.tar.gz /usr/src/
WORKDIR /usr/src
RUN tar -xzf nginx-${NGINX_VERSION}.tar.gz \
 && cd nginx-${NGINX_VERSION} \
 && ./configure \
      --prefix=/etc/nginx --sbin-path=/usr/sbin/nginx --modules-path=/usr/lib/nginx/modules \
      --conf-path=/etc/nginx/nginx.conf --error-log-path=/var/log/nginx/error.log \
      --http-log-path=/var/log/nginx/access.log --pid-path=/run/nginx.pid --lock-path=/run/nginx.lock \
      --http-client-body-temp-path=/var/cache/nginx/client_temp \
      --http-proxy-temp-path=/var/cache/nginx/proxy_temp \
      --http-fastcgi-temp-path=/var/cache/nginx/fastcgi_temp \
      --http-uwsgi-temp-path=/var/cache/nginx/uwsgi_temp \
      --http-scgi-temp-path=/var/cache/nginx/scgi_temp \
      --user=nginx --group=nginx --with-compat --with-file-aio --with-threads \
      --with-http_addition_module --with-http_auth_request_module --with-http_dav_module \
      --with-http_flv_module --with-http_gunzip_module --with-http_gzip_static_module \
      --with-http_mp4_module --with-http_random_index_module --with-http_realip_module \
      --with-http_secure_link_module --with-http_slice_module --with-http_ssl_module \
      --with-http_stub_status_module --with-http_sub_module --with-http_v2_module \
      --with-http_v3_module --with-mail --with-mail_ssl_module --with-stream \
      --with-stream_realip_module --with-stream_ssl_module --with-stream_ssl_preread_module \
      --with-cc-opt="-g -O2 -ffile-prefix-map=/usr/src/nginx-${NGINX_VERSION}=. -fstack-protector-strong -Wformat -Werror=format-security -Wp,-D_FORTIFY_SOURCE=2 -fPIC" \
      --with-ld-opt='-Wl,-z,relro -Wl,-z,now -Wl,--as-needed -pie' \
 && make -j"$(nproc)" \
 && make install DESTDIR=/out \
 && mkdir -p /out/usr/lib/nginx/modules /out/var/cache/nginx \
 && rm -f /out/etc/nginx/*.default

FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libpcre2-8-0 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 101 nginx \
 && useradd --system --gid nginx --uid 101 --no-create-home --home-dir /nonexistent \
      --shell /bin/false nginx
COPY --from=build /out/ /
COPY nginx.conf /etc/nginx/nginx.conf
COPY default.conf /etc/nginx/conf.d/default.conf
RUN ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && nginx -t
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

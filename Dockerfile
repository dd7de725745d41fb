# Manifold's own image, built by Manifold (make image): the binary is
# cross-compiled beforehand (CGO_ENABLED=0) and copied per TARGETARCH, so no Go
# toolchain image is needed. busybox gives the health check its wget and
# `docker compose exec` a shell. BuildKit runs in its own container.
FROM busybox:1
ARG TARGETARCH
COPY manifold-${TARGETARCH} /usr/local/bin/manifold
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV MANIFOLD_ADDR=:8080 MANIFOLD_DATA=/var/lib/manifold
VOLUME /var/lib/manifold
EXPOSE 8080
ENTRYPOINT ["manifold"]
CMD ["serve"]

# The Manifold image for docker-compose.yml. BuildKit runs in its own container.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/manifold ./cmd/manifold

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/manifold /usr/local/bin/manifold
ENV MANIFOLD_ADDR=:8080 MANIFOLD_DATA=/var/lib/manifold
VOLUME /var/lib/manifold
EXPOSE 8080
ENTRYPOINT ["manifold", "serve"]

# One image for every lull component: `lull controller`, `lull autoscaler`, `lull activator`, and
# `lull fixture` for the examples. The binary is static (musl), so the final image holds nothing
# else but CA certificates, and it runs as an unprivileged user.
#
#   docker build -t lull:dev .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# ring's C and assembly parts build with musl-gcc; the result needs no libc at run time.
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin lull \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/lull /out/lull

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/lull /usr/local/bin/lull
# Specs run `lull fixture` by name.
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8080 9090 9091
ENTRYPOINT ["/usr/local/bin/lull"]

# The test upstream of tests/e2e.sh (never shipped): the static e2e-service binary
# (crates/testkit/src/bin/e2e-service.rs, built on the host with +crt-static like
# `docker/build.sh --prebuilt`) in a scratch image. tests/e2e_services.sh builds it from a
# context folder holding only that binary: nothing is pulled, any builder works.
FROM scratch
LABEL org.opencontainers.image.title="containerize-e2e-service" \
      org.opencontainers.image.description="tests/e2e.sh only: plain HTTP/1.1 echo service and an HTTPS fetch client"
COPY e2e-service /e2e-service
USER 1000:1000
EXPOSE 3000
ENTRYPOINT ["/e2e-service"]

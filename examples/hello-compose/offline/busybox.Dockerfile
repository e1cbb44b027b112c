# Offline stand-in for the official busybox image, for machines that cannot pull from Docker Hub:
# Debian's static busybox on an empty image, with the applet links and the /tmp the official one has.
# Build: docker build -f offline/busybox.Dockerfile --build-arg BASE_IMAGE=<debian base> offline/
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS debian
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends busybox-static >/dev/null && rm -rf /var/lib/apt/lists/*

FROM scratch
COPY --from=debian /bin/busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox --install -s /bin && mkdir -p /tmp /usr/local/bin && chmod 1777 /tmp"]
CMD ["sh"]

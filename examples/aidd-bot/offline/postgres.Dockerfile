# Offline stand-in for the official postgres image, built from the Debian base
# (package "postgresql"). Same contract: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB,
# data in /var/lib/postgresql/data, initdb on first start only, listens on all addresses.
# Build: docker build -f offline/postgres.Dockerfile --build-arg BASE_IMAGE=<debian base> offline/
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG PG_MAJOR=15
# Debian keeps the server binaries outside PATH; put them first so initdb/postgres/pg_ctl
# and the matching psql/pg_dump/pg_isready are found without pg_wrapper.
ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8

# Fail the build early if the base lacks PostgreSQL or util-linux's setpriv.
RUN postgres --version && initdb --version && command -v setpriv pg_isready psql pg_dump

COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

# SIGINT = PostgreSQL "fast shutdown", as in the official image.
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]

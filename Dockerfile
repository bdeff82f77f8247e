# Schoolgate as a container: the filter, its demo lists, and a config a school edits.
#
#   docker build -t schoolgate .
#   docker volume create schoolgate-config; docker volume create schoolgate-data
#   docker run -d --name schoolgate -p 8080:8080 \
#     -v schoolgate-config:/etc/schoolgate -v schoolgate-data:/var/lib/schoolgate schoolgate
#
# Named volumes start with the image's files (the config below); a bind mount of an
# empty host folder over /etc/schoolgate would hide them, so copy config/ into it first.
# The CA certificate for school devices appears in the data volume, under mitmproxy/.
# Groups are found by client address: behind Docker's userland proxy every client can
# appear as the bridge's address, so on a school network prefer --network host (or proxy
# logins). Transparent mode needs the host's network (--network host) and the nftables rules of
# deploy/nftables on the host; see deploy/README.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN groupadd --system --gid 10001 schoolgate \
 && useradd --system --uid 10001 --gid schoolgate --no-create-home \
      --home-dir /var/lib/schoolgate --shell /usr/sbin/nologin schoolgate

WORKDIR /app
# The package, its templates and data, and the store's migrations.
COPY pyproject.toml README.md alembic.ini ./
COPY proxy/ proxy/
COPY addons/ addons/
COPY blocklists/ blocklists/
COPY migrations/ migrations/
# Editable (compat) install: the store finds its migrations beside the source in /app.
RUN pip install --config-settings editable_mode=compat -e . \
 && python -c "import proxy, addons, blocklists, mitmproxy"

# The default configuration: the demo policy, and settings for a container.
COPY config/ /etc/schoolgate/
COPY deploy/docker/schoolgate.yaml /etc/schoolgate/schoolgate.yaml
RUN mkdir -p /var/lib/schoolgate \
 && chown -R schoolgate:schoolgate /etc/schoolgate /var/lib/schoolgate

USER schoolgate
VOLUME ["/etc/schoolgate", "/var/lib/schoolgate"]
# 8080: the proxy (listen in schoolgate.yaml). Metrics (metrics_listen) stay on the container's
# loopback, unauthenticated, so they are not exposed: scrape with --network host or a proxy.
EXPOSE 8080

# Healthy when the proxy port takes connections and the metrics endpoint answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import socket, urllib.request; socket.create_connection(('127.0.0.1', 8080), 3).close(); urllib.request.urlopen('http://127.0.0.1:9180/metrics', timeout=3).read()"]

ENTRYPOINT ["schoolgate"]
CMD ["run", "--config", "/etc/schoolgate"]

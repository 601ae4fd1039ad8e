# Falaj as a container: a slim, non-root image, the home on a volume, the master key a
# Docker secret.
#
#   docker build -t falaj .                          # from the source tree (needs the index)
#   docker build -t falaj --build-arg BUNDLE=falaj-bundle --build-arg BUNDLE_KEY=FINGERPRINT .
#                                                    # offline, from `falaj bundle --out
#                                                    # falaj-bundle` in the build context,
#                                                    # checked by its install.sh first
#   head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > master.key   # keep a copy offline
#   docker run -d --name falaj -p 8443:8080 -v falaj-home:/var/lib/falaj \
#       -v "$PWD/master.key:/run/secrets/falaj-master-key:ro" falaj
#   (compose / swarm: a secret named falaj-master-key lands at the same path)
#
# Inside the container it listens on 0.0.0.0, so `falaj run` serves HTTPS only (it refuses
# plain HTTP beyond loopback): a self-signed certificate is made in the volume's tls/
# unless FALAJ_TLS_CERT and FALAJ_TLS_KEY name mounted files; every route but /healthz
# needs a signed-in user or a token. No key or secret is ever an ENV or ARG of the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG BUNDLE=""
ARG BUNDLE_KEY=""
# PyPI's Linux torch wheel is the CUDA build (several GB of nvidia wheels); the CPU build
# of the same pinned version comes from PyTorch's own index (a GPU box: drop this line)
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY . .
RUN if [ -n "$BUNDLE" ]; then \
        "./$BUNDLE/install.sh" --expect-key "$BUNDLE_KEY" --venv /opt/falaj/venv; \
    else \
        python -m venv /opt/falaj/venv && /opt/falaj/venv/bin/pip install --quiet . ; \
    fi

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/falaj/venv/bin:$PATH \
    FALAJ_HOME=/var/lib/falaj \
    FALAJ_HOST=0.0.0.0 \
    FALAJ_PORT=8080 \
    FALAJ_MASTER_KEY_FILE=/run/secrets/falaj-master-key \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/falaj --create-home \
        --shell /usr/sbin/nologin falaj \
    && chmod 0750 /var/lib/falaj
COPY --from=build /opt/falaj/venv /opt/falaj/venv
USER 10001:10001
WORKDIR /var/lib/falaj
VOLUME ["/var/lib/falaj"]
EXPOSE 8080
# A liveness probe of this container's own server over loopback: its certificate is
# usually the self-signed one, so the probe does not verify it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:8080/healthz', context=ssl._create_unverified_context(), timeout=4)"]
# Without the secret the stores cannot be opened: say so instead of making a key that
# would live in the container's writable layer.
ENTRYPOINT ["/bin/sh", "-c", "test -r \"$FALAJ_MASTER_KEY_FILE\" || { echo \"falaj: no master key at $FALAJ_MASTER_KEY_FILE: give it as the Docker secret falaj-master-key (see the Dockerfile)\" >&2; exit 2; }; exec \"$@\"", "falaj"]
CMD ["falaj", "run"]

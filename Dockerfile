# Falaj as a container: docker build -t falaj . && docker run -p 8080:8080 -v falaj:/var/lib/falaj falaj
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FALAJ_HOME=/var/lib/falaj \
    FALAJ_HOST=0.0.0.0 \
    FALAJ_PORT=8080

RUN useradd --system --home-dir /var/lib/falaj --create-home falaj
WORKDIR /opt/falaj
COPY pyproject.toml README.md ./
COPY appliance ./appliance
COPY kernels ./kernels
COPY webui ./webui
COPY benchmarks ./benchmarks
RUN pip install . && rm -rf /root/.cache

USER falaj
VOLUME ["/var/lib/falaj"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
# Give the master key as a secret file: -e FALAJ_MASTER_KEY_FILE=/run/secrets/falaj-master-key
CMD ["falaj", "run"]

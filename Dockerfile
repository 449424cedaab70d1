# ClassLens as a hosted dashboard. Build: docker build -t classlens .
# Run:   docker run -p 8501:8501 -v classlens-data:/data \
#          -v "$PWD/secrets.toml:/app/.streamlit/secrets.toml:ro" classlens
FROM python:3.11-slim

# CPU wheels of torch/torchvision (the default index ships the CUDA build, several GB);
# build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 for a GPU host.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CLASSLENS_HOSTED=1 \
    CLASSLENS_RUNS_DIR=/data/runs \
    CLASSLENS_CACHE_DIR=/data/cache \
    PORT=8501 \
    ADDRESS=0.0.0.0

WORKDIR /app

COPY requirements.txt .
RUN pip install --extra-index-url "${TORCH_INDEX}" -r requirements.txt

RUN useradd --create-home --uid 10001 --user-group classlens \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --chown=root:root . .
COPY deploy/streamlit-config.toml /app/.streamlit/config.toml
RUN chmod 0755 deploy/entrypoint.sh

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://localhost:' + os.environ.get('PORT', '8501') + '/_stcore/health', timeout=4)"]

ENTRYPOINT ["deploy/entrypoint.sh"]

# repclass container images, CPU and CUDA, from this one file:
#
#   docker build -t repclass:0.1.0-cpu .                                # CPU-only PyTorch (~1 GB)
#   docker build -t repclass:0.1.0-cuda --build-arg TORCH_VARIANT=cuda .  # CUDA PyTorch (~6 GB)
#
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:/data" repclass:0.1.0-cpu ingest samples.tsv reps/ --out cohort.store
#   docker run --rm --gpus all -v "$PWD:/data" repclass:0.1.0-cuda train cohort.store --target status --out model --device cuda
#
# The entry point is repclass: `docker run IMAGE ingest ...` runs `repclass ingest ...`, while a
# command that exists in the image (`bash -c ...`, `repclass ...`, what Nextflow and Snakemake run)
# runs as it is. The image runs as the unprivileged user `repclass` (uid 1000); `-u` gives files
# written to a mounted folder your own uid. olga is included, so `repclass simulate` works.
# The CUDA image needs only the NVIDIA driver on the host (`--gpus all`; Singularity/Apptainer: `--nv`):
# PyPI's torch wheels for Linux bundle the CUDA runtime libraries. Docker names these images
# docker.io/library/repclass:0.1.0-cpu in full; the Nextflow modules and the Snakemake rules refer
# to them by that name (docs/pipelines.md).
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

# cpu: PyTorch's CPU wheels (a plain `pip install torch` pulls the multi-GB CUDA build on Linux).
# cuda: the default PyPI wheels, which are the CUDA build.
ARG TORCH_VARIANT=cpu
ARG TORCH_SPEC="torch>=2.3"

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# procps: `ps`, which Nextflow uses to collect task metrics inside containers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends procps \
 && rm -rf /var/lib/apt/lists/*

RUN case "${TORCH_VARIANT}" in \
      cpu)  pip install "${TORCH_SPEC}" --extra-index-url https://download.pytorch.org/whl/cpu ;; \
      cuda) pip install "${TORCH_SPEC}" ;; \
      *)    echo "TORCH_VARIANT must be cpu or cuda, got ${TORCH_VARIANT}" >&2; exit 2 ;; \
    esac

# repclass and the rest of its dependencies (pyproject.toml), torch already satisfied.
COPY pyproject.toml README.md LICENSE /src/
COPY repclass /src/repclass
RUN pip install "/src[simulate]" && rm -rf /src \
 && repclass --version \
 && python -c "import torch, olga; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# `IMAGE ARGS...` -> `repclass ARGS...`, unless ARGS starts with a command the image has.
RUN printf '%s\n' '#!/bin/sh' \
      'if [ "$#" -gt 0 ] && command -v -- "$1" >/dev/null 2>&1; then exec "$@"; fi' \
      'exec repclass "$@"' > /usr/local/bin/repclass-entrypoint \
 && chmod 755 /usr/local/bin/repclass-entrypoint \
 && useradd --create-home --uid 1000 --shell /bin/bash repclass \
 && mkdir -p /data && chown repclass:repclass /data

# OCI annotations; SOURCE_URL is the project's published address (the sdist's home until a public
# repository exists).
ARG VERSION=0.1.0
ARG SOURCE_URL=https://pypi.org/project/repclass/
LABEL org.opencontainers.image.title="repclass" \
      org.opencontainers.image.description="Immune repertoire classification with DeepRC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="repclass developers"

USER repclass
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/repclass-entrypoint"]
CMD ["--help"]

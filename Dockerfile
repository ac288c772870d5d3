# repclass container images, CPU and CUDA, from this one file:
#
#   docker build -t repclass:0.1.0-cpu .                                # CPU-only PyTorch (~1 GB)
#   docker build -t repclass:0.1.0-cuda --build-arg TORCH_VARIANT=cuda .  # CUDA PyTorch (~6 GB)
#
#   docker run --rm -v "$PWD:/data" -w /data repclass:0.1.0-cpu repclass ingest samples.tsv reps/ --out cohort.store
#   docker run --rm --gpus all -v "$PWD:/data" -w /data repclass:0.1.0-cuda repclass train cohort.store --target status --out model --device cuda
#
# The CUDA image needs only the NVIDIA driver on the host (`--gpus all`; Singularity/Apptainer: `--nv`):
# PyPI's torch wheels for Linux bundle the CUDA runtime libraries. The Nextflow modules and the
# Snakemake rules refer to these two tags (docs/pipelines.md).
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
COPY pyproject.toml README.md /src/
COPY repclass /src/repclass
RUN pip install /src && rm -rf /src \
 && repclass --version \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

LABEL org.opencontainers.image.title="repclass" \
      org.opencontainers.image.description="Immune repertoire classification with DeepRC" \
      org.opencontainers.image.licenses="MIT"

WORKDIR /data
CMD ["repclass", "--help"]

# SDK worker image for running the microturn job on Dataflow, Flink or Spark (README "Running at scale").
#   docker build -t REGISTRY/microturn-worker:0.1.0 .
# Not built or run by the tests: these machines cannot reach Docker Hub. The Beam version of the base image must
# equal the client's (pyproject.toml pins apache-beam 2.77.0); the image's entrypoint (/opt/apache/beam/boot) is
# Beam's own, so the image works with --sdk_container_image (Dataflow), --environment_type DOCKER, and as an
# EXTERNAL worker pool (`docker run IMAGE --worker_pool`).
FROM apache/beam_python3.11_sdk:2.77.0

# ffmpeg decodes every format but WAV/FLAC and all video; espeak-ng is the demo/synth TTS
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg espeak-ng libflite1 festival festvox-kallpc16k festvox-kdlpc16k \
    && rm -rf /var/lib/apt/lists/*

# The job runs on CPUs: torch and torchaudio come first from PyTorch's CPU wheel index (no CUDA libraries; the CUDA
# build from PyPI brings 4.1 GB of nvidia-* packages, measured in a set-up .venv), at the versions pyproject.toml
# pins, so that `pip install .` below finds them satisfied; a layer of its own, kept across source changes.
# --build-arg TORCH_INDEX_URL= (empty) keeps PyPI's default (CUDA) build instead.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.8.0
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" \
            "torch==$TORCH_VERSION" "torchaudio==$TORCH_VERSION"; \
    fi

WORKDIR /opt/microturn
COPY pyproject.toml README.md microturn_cli.py ./
COPY schemas ./schemas
COPY pipeline ./pipeline
COPY synth ./synth
COPY trainer ./trainer
COPY kernels ./kernels
COPY evals ./evals
COPY cli ./cli
RUN pip install --no-cache-dir . && pip check

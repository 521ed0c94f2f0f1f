# pdserve image for Kubernetes (deploy/): Debian 12, built with scripts/setup.sh + CMake.
#
# UNTESTED: no CI job builds this image (the development machines have no container runtime).
# The manifests in deploy/ assume what it produces: binaries in /opt/pdserve/bin
# (pd-router, pd-prefill, pd-decode, pd-up, pd-makemodel, pd-client, pd-bench, pd-generate).
#
#   docker build -t pdserve:latest .                            # CPU backend (cpu-dev overlay)
#   docker build -t pdserve:cuda --build-arg PD_WITH_CUDA=ON \
#       --build-arg CUDA_REPO=1 .                               # CUDA backend (sm_90a, H100)
#
# CUDA: Debian 12's own nvidia-cuda-toolkit (11.8) cannot target sm_90a, so CUDA_REPO=1 adds
# NVIDIA's Debian 12 apt repository and installs cuda-toolkit-12-4 in the build stage (a download
# at image-build time, not at pdserve build time). The runtime stage then needs the matching CUDA
# runtime libraries; the NVIDIA container toolkit injects the driver.
ARG DEBIAN=debian:12

FROM ${DEBIAN} AS build
ARG PD_WITH_CUDA=OFF
ARG CUDA_REPO=0
ARG PD_JOBS=8
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
RUN if [ "$CUDA_REPO" = "1" ]; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates wget && \
      wget -q https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb && \
      dpkg -i cuda-keyring_1.1-1_all.deb && apt-get update -qq && \
      apt-get install -y -qq --no-install-recommends cuda-toolkit-12-4 && \
      rm -rf /var/lib/apt/lists/* cuda-keyring_1.1-1_all.deb; \
    fi
COPY . .
RUN rm -rf build && \
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPD_WITH_CUDA=${PD_WITH_CUDA} -DPD_BUILD_TESTS=OFF -DPD_BUILD_BENCH=OFF && \
    cmake --build build -j ${PD_JOBS} && \
    mkdir -p /opt/pdserve/bin && \
    for b in pd-router pd-prefill pd-decode pd-up pd-makemodel pd-client pd-bench pd-generate; do \
      find build/src -type f -name "$b" -perm -u+x -exec cp {} /opt/pdserve/bin/ \; ; \
    done && ls -l /opt/pdserve/bin

FROM ${DEBIAN}
ENV DEBIAN_FRONTEND=noninteractive
# Runtime libraries of the dynamically linked build (libibverbs/librdmacm are loaded at run time
# by the RDMA transport; harmless without RDMA hardware).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 libspdlog1.10 libfmt9 libopenblas0 \
      libpcre2-8-0 libibverbs1 librdmacm1 libcpp-httplib0.11 libgomp1 ca-certificates && \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/pdserve /opt/pdserve
COPY configs /opt/pdserve/configs
ENV PATH=/opt/pdserve/bin:$PATH
# Runs as root: IPC_LOCK (RDMA memory registration, deploy/components/rdma) is not effective for
# non-root users in most runtimes. Set runAsUser in the pod spec where RDMA is not used.
ENTRYPOINT []
CMD ["pd-router", "--help"]

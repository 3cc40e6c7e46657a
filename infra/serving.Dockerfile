# The serving image: the project image running `ranker serve` (serving/, docs/serving.md).
#
#   infra/build_images.sh        # builds it after the project image
#   docker run -p 8080:8080 -v "$PWD/work_dir/latest/model:/model:ro" -e AIP_STORAGE_URI=/model mmoe-ranker-serving
#
# It is configured entirely by environment variables, so the same image runs as a Vertex AI custom
# container (which sets AIP_STORAGE_URI, AIP_HTTP_PORT, AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE) and as a
# KServe InferenceService (MODEL_URI, MODEL_NAME, PORT); flags after the image name override them.
#
# It is built FROM the project image and adds only configuration: the package's core dependencies
# (TensorFlow, Beam, kfp, ...) are needed by `trainer` anyway, and sharing every layer means a
# registry, a node's image cache and a CI push store them once.
ARG RANKER_IMAGE=mmoe-ranker:latest
FROM ${RANKER_IMAGE}
# checkov:skip=CKV_DOCKER_7:the build script passes the project image's exact tag (CI: the commit SHA)
# No AIP_HTTP_PORT: the server reads it before PORT, so a default here would hide the PORT that Knative
# (KServe's serverless mode) and Cloud Run set; without either the server listens on 8080.
ENV AIP_HEALTH_ROUTE=/health \
    AIP_PREDICT_ROUTE=/predict \
    RANKER_GRACE_PERIOD_S=30
EXPOSE 8080
USER 1000:1000
# Healthy once the model is loaded (the port opens only then). Kubernetes and Vertex AI
# use their own probes; this one serves `docker run` and Compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ.get('AIP_HTTP_PORT') or os.environ.get('PORT') or '8080', os.environ['AIP_HEALTH_ROUTE']), timeout=4)"]
ENTRYPOINT ["ranker", "serve"]

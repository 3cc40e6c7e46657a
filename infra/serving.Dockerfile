# The serving image: the project image running `ranker serve`.
ARG RANKER_IMAGE=mmoe-ranker:latest
FROM ${RANKER_IMAGE}
ENV AIP_HTTP_PORT=8080
EXPOSE 8080
ENTRYPOINT ["ranker", "serve"]

#!/bin/sh
# Entrypoint of the smiless worker image.
#   docker run IMAGE                 -> python -m smiless.worker
#   docker run IMAGE --model NAME …  -> python -m smiless.worker --model NAME …
#   docker run IMAGE python -c …     -> runs that command (same image, no worker), e.g. the
#                                       cold-start floor of `smiless bench coldstart`.
# exec: the worker is the container's main process and receives `docker stop`'s SIGTERM
# itself (as PID 1 it must install a SIGTERM handler, or run the container with --init).
case "${1-}" in
  "" | -*) exec python -m smiless.worker "$@" ;;
  *) exec "$@" ;;
esac

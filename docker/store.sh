# Sourced by docker/build.sh and tests/packaging/image_test.sh: the buildah storage that holds
# Handoff's base images, builds and image. A store of its own, so that removing what a build leaves
# behind (`rmi --prune`) never touches anyone else's images. Inspect it the same way, e.g.
#   buildah --root /var/cache/handoff/containers/storage --runroot /var/cache/handoff/containers/run images
HANDOFF_IMAGE_STORE="${HANDOFF_IMAGE_STORE:-${HANDOFF_CACHE:-/var/cache/handoff}/containers}"
hbuildah() { buildah --root "$HANDOFF_IMAGE_STORE/storage" --runroot "$HANDOFF_IMAGE_STORE/run" "$@"; }

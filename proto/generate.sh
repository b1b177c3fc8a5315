#!/usr/bin/env bash
# Fetches the pinned upstream .proto files through the Go module proxy (`go mod download`),
# checks each module against its pinned go.sum hash, and generates the Python stubs into the
# private `_pb` packages. The .proto text never lands in the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
python=${PYTHON:-$top/.venv/bin/python}
work=$top/build/proto
rm -rf "$work"
mkdir -p "$work"

grep -v -E '^\s*(#|$)' "$here/pins.txt" | while read -r module version sum file package; do
    json=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version")
    dir=$(printf '%s' "$json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    got=$(printf '%s' "$json" | "$python" -c 'import json,sys; print(json.load(sys.stdin)["Sum"])')
    if [ "$got" != "$sum" ]; then
        echo "proto: $module@$version has hash $got, pinned $sum" >&2
        exit 1
    fi
    # The file is placed under the target package's path so that the generated *_grpc module
    # imports its sibling by the package path (cri_shim._pb.api_pb2), not as a top-level module.
    mkdir -p "$work/src/$package"
    cp "$dir/$file" "$work/src/$package/"
    chmod u+w "$work/src/$package/$(basename "$file")"
    mkdir -p "$top/$package"
    "$python" -m grpc_tools.protoc -I "$work/src" \
        --python_out="$top" --grpc_python_out="$top" \
        "$work/src/$package/$(basename "$file")"
    printf '"""Generated from %s@%s by proto/generate.sh; do not edit."""\n' "$module" "$version" \
        > "$top/$package/__init__.py"
    echo "proto: $module@$version -> $package"
done

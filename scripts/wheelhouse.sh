#!/usr/bin/env bash
# The wheel folder for scripts/gpu_check.sh on a node without network (docs/GPU_CHECK.md).
#
#     scripts/wheelhouse.sh [DIR]      # default: wheelhouse/; run where PyPI is reachable
#
# Everything the check needs beyond torch, torchvision and timm (which the node has): hydra-core,
# omegaconf, antlr4-python3-runtime, PyYAML, tqdm, pytest and their dependencies, plus pip
# itself (the check runs pip from its wheel), for each Python of WHEEL_PYTHONS on
# manylinux2014 WHEEL_ARCH. WANDB=1 adds wandb (about 40 MB more; the check runs with W&B
# disabled and does not need it).
set -euo pipefail
dir="${1:-wheelhouse}"
py="${PYTHON:-python3}"
pythons="${WHEEL_PYTHONS:-3.10 3.11 3.12}"
arch="${WHEEL_ARCH:-x86_64}"
mkdir -p "$dir"
export PIP_CONFIG_FILE=/dev/null  # PyPI and this command line only: no local index or constraint
unset PIP_CONSTRAINT PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL
requirements=("hydra-core>=1.3" "omegaconf>=2.3" "tqdm>=4.66" "pytest>=8" pip)
if [ "${WANDB:-0}" = 1 ]; then requirements+=("wandb>=0.18"); fi

# omegaconf 2.3 pins antlr4-python3-runtime 4.9.*, published as an sdist only: build its
# pure-Python wheel here (any Python 3 runs it), so that every download below is a wheel
"$py" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "antlr4-python3-runtime==4.9.3"
for version in $pythons; do
  # pip evaluates environment markers for the Python it runs on, not for --python-version:
  # name pytest's Python 3.10 dependencies (exceptiongroup, tomli) explicitly
  extra=()
  if [ "$version" = 3.10 ]; then extra=("exceptiongroup>=1" "tomli>=1"); fi
  "$py" -m pip download --quiet --dest "$dir" --find-links "$dir" --only-binary=:all: \
    --python-version "$version" --implementation cp \
    --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" \
    "${requirements[@]}" "${extra[@]}"
done
mib=$(du -sm "$dir" | cut -f1)
echo "wheelhouse: $(ls "$dir"/*.whl | wc -l) wheels, ${mib} MiB in $dir (Python $pythons, $arch)"
if [ "$mib" -ge 64 ]; then
  echo "wheelhouse: over 64 MiB; without WANDB=1 it stays small (the check disables W&B)" >&2
fi

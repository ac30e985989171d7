#!/usr/bin/env bash
# Run here (where pip reaches the package index), once per session that will use a GPU machine: downloads into
# .whl/ (ignored by git) the x86-64 CPython 3.12 wheels that the device machine's image lacks, and into .gl/ the
# EGL/GL loaders for MuJoCo's headless rendering. scripts/device_check.sh installs them there (carry .whl and .gl).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
mkdir -p .whl .gl
platforms=()
for n in 2_28 2_27 2_24 2_17 2014 1; do
  case $n in 2014) platforms+=(--platform manylinux2014_x86_64);; 1) platforms+=(--platform manylinux1_x86_64);;
    *) platforms+=(--platform "manylinux_${n}_x86_64");; esac
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  --platform any -d .whl \
  stable-baselines3==2.9.2 sb3-contrib==2.9.2 gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==3.3.0 \
  metaworld==3.1.1 glfw==2.11.0 pyopengl==3.1.10 sbx-rl  # not the offline VLM's text encoder (83 MB): the 64 MiB carry limit
if command -v apt-get >/dev/null; then
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  apt-get $o update -qq && (cd .gl && apt-get $o download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
    libegl-mesa0 libgl1-mesa-dri >/dev/null)
fi
du -sh .whl .gl

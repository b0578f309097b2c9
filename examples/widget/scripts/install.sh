#!/bin/sh
# Installs the locked dependencies (requirements.txt) from vendor/ into .venv: what `pip install
# -r requirements.txt` would do with a registry. The bake runs this once per lockfile.
set -eu
python3 -m venv --without-pip .venv
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
grep -v '^#' requirements.txt | grep . | while IFS='=' read -r name _ version; do
  cp -R "vendor/$name" "$site/$name"
  got=$(.venv/bin/python -c "import $name; print($name.__version__)")
  [ "$got" = "$version" ] || { echo "install: $name is $got, the lockfile wants $version" >&2; exit 1; }
  echo "installed $name $version"
done
# Precompile what was installed, as pip would.
.venv/bin/python -m compileall -q "$site" >/dev/null

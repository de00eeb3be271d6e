#!/usr/bin/env bash
# Build vramancer-node_<version>_<arch>.deb: a private venv under /opt/vramancer-node.
#
#   packaging/deb/build.sh [--out DIR] [--fast]
#
#   --out DIR   where the .deb goes (default: dist/)
#   --fast      gzip -1 instead of xz: for the test suite, not for releases
#
# PYTHON=/usr/bin/python3.X picks another system Python (default /usr/bin/python3).
#
# The venv is created with --system-site-packages and does not bundle PyTorch (nor
# numpy, which torch brings): the node uses the torch of the system Python -- JetPack's
# wheel on a Jetson, python3-torch where the distribution has a recent one, or one
# installed into the venv (/opt/vramancer-node/bin/python -m pip install torch); postinst
# says so when torch is missing.  See docs/install.md and debian/README.Debian.
# Every other dependency is bundled, so installing needs no network.
#
# The build itself needs pip's index (or PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR for a
# wheelhouse: pip reads its usual environment variables).  The architecture and the
# Python ABI are those of the build machine: build arm64 packages on an arm64 board.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
here="$repo/packaging/deb"
out="$repo/dist"
compress=(-Zxz -z6)
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (usage: build.sh [--out DIR] [--fast])" >&2; exit 1 ;;
  esac
done

# The distribution's Python: the venv links to it, and the package depends on it.  Not
# the first python3 on PATH (pyenv, conda...), which the service user may not reach.
python=${PYTHON:-/usr/bin/python3}
case "$(readlink -f "$python")" in
  /usr/bin/*) ;;
  *) echo "build.sh: $python is not the system Python (/usr/bin/python3*)" >&2; exit 1 ;;
esac
if ! "$python" -c 'import ensurepip' 2>/dev/null; then
  echo "build.sh: $python has no venv support: apt-get install python3-venv" >&2
  exit 1
fi
package=vramancer-node
prefix=/opt/vramancer-node
version=$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
arch=$(dpkg --print-architecture)
changelog_version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' "$here/debian/changelog")
if [ "$changelog_version" != "$version" ]; then
  echo "build.sh: packaging/deb/debian/changelog is at $changelog_version, pyproject.toml at $version: add a changelog entry" >&2
  exit 1
fi
# Everything the package needs at run time except what the system Python provides.
mapfile -t deps < <("$python" - "$repo/pyproject.toml" <<'PY'
import re, sys, tomllib
SYSTEM = {"torch", "numpy"}
for dep in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    name = re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].lower()
    if name not in SYSTEM:
        print(dep)
PY
)

say() { printf '==> %s\n' "$*" >&2; }
stage=$(mktemp -d "${TMPDIR:-/tmp}/vramancer-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
venv="$root$prefix"

say "venv $prefix (python$pyver, system site packages)"
"$python" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile "${deps[@]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-compile --no-deps "$repo"

say "relocating the venv to $prefix"
# Scripts and pyvenv.cfg name the build directory; the installed venv lives at $prefix.
grep -rlI --null "$venv" "$venv/bin" "$venv/pyvenv.cfg" | xargs -0 -r sed -i "s#$venv#$prefix#g"
# pip stays (python -m pip installs torch into the venv) but not its scripts, whose
# #!/opt/... python3 lintian reads as a script without a python3 dependency.
rm -f "$venv"/bin/activate.csh "$venv"/bin/activate.fish "$venv"/bin/Activate.ps1 "$venv"/bin/pip*
find "$venv" -name direct_url.json -delete   # the build path, nothing an install needs
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +   # postinst compiles
find "$venv" -name '*.so' -exec strip --strip-unneeded {} + 2>/dev/null || true

say "files"
install -d "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/vramancer" \
  "$root/usr/share/doc/$package" "$root/usr/share/$package/systemd" \
  "$root/usr/share/lintian/overrides" "$root/DEBIAN"
ln -s "$prefix/bin/vramancer-node" "$root/usr/bin/vramancer-node"
ln -s "$prefix/bin/vramancer" "$root/usr/bin/vramancer"
install -m 0644 "$repo/packaging/systemd/vramancer-node.service" "$root/lib/systemd/system/"
install -m 0644 "$repo/packaging/systemd/jetson.conf" "$root/usr/share/$package/systemd/"
install -m 0644 "$here/node.toml" "$root/etc/vramancer/node.toml"
install -m 0644 "$here/debian/copyright" "$root/usr/share/doc/$package/copyright"
install -m 0644 "$here/debian/README.Debian" "$root/usr/share/doc/$package/README.Debian"
gzip -9n -c "$here/debian/changelog" >"$root/usr/share/doc/$package/changelog.gz"
chmod 0644 "$root/usr/share/doc/$package/changelog.gz"
install -m 0644 "$here/debian/lintian-overrides" "$root/usr/share/lintian/overrides/$package"
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
echo /etc/vramancer/node.toml >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
# Directories 0755, regular files keep their execute bit but lose group/other write.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod go-w {} +

installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@PYVER@/$pyver/" \
  -e "s/@INSTALLED_SIZE@/$installed_kib/" "$here/debian/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
  | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/${package}_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
say "built $deb"
echo "$deb"

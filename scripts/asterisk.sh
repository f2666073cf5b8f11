#!/usr/bin/env bash
# Prints the path of an `asterisk` binary for the real-Asterisk tests, building one if needed.
#   ASTERISK_BIN=/path/to/asterisk   use that binary (an installed Asterisk 20/22)
#   ASTERISK_SRC=/path/to/asterisk-22.10.1.tar.gz
#                                    build it once into ~/.cache/advancepay/asterisk-<sha12>
#                                    (override with ASTERISK_CACHE) and print its sbin/asterisk
# Otherwise `asterisk` on PATH is used. Nothing found: prints nothing and exits 3.
# Also installs Debian's GSM core sounds (beep, digits) that the tests' handsets play.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
    command -v apt-get >/dev/null || { echo "asterisk.sh: please install $*" >&2; return 1; }
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq >&2; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need_pkgs() {
    local missing=()
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

sounds() {
    [ -d /usr/share/asterisk/sounds/en_US_f_Allison ] && return 0
    command -v dpkg-query >/dev/null || return 0
    need_pkgs asterisk-core-sounds-en-gsm >&2 || true
}

if [ -n "${ASTERISK_BIN:-}" ]; then
    [ -x "$ASTERISK_BIN" ] || { echo "asterisk.sh: ASTERISK_BIN=$ASTERISK_BIN is not executable" >&2; exit 2; }
    sounds; echo "$ASTERISK_BIN"; exit 0
fi

if [ -n "${ASTERISK_SRC:-}" ]; then
    [ -f "$ASTERISK_SRC" ] || { echo "asterisk.sh: ASTERISK_SRC=$ASTERISK_SRC is not a file" >&2; exit 2; }
    sha=$(sha256sum "$ASTERISK_SRC" | cut -c1-12)
    cache=${ASTERISK_CACHE:-$HOME/.cache/advancepay}
    prefix="$cache/asterisk-$sha"
    if [ ! -f "$prefix/.built" ]; then
        need_pkgs build-essential libedit-dev libjansson-dev libxml2-dev libsqlite3-dev uuid-dev \
            libssl-dev libcurl4-openssl-dev pkg-config >&2
        mkdir -p "$cache"
        exec 9>"$cache/build.lock"
        flock 9
        if [ ! -f "$prefix/.built" ]; then
            work=$(mktemp -d "$cache/build.XXXXXX")
            log="$cache/build-$sha.log"
            echo "asterisk.sh: building Asterisk from $ASTERISK_SRC into $prefix (log: $log, about 3 min)" >&2
            (
                set -e
                cd "$work"
                tar xzf "$ASTERISK_SRC"
                [ -x ./configure ] || cd ./*/
                ./configure --prefix="$prefix" --without-pjproject
                make menuselect.makeopts
                menuselect/menuselect --disable BUILD_NATIVE --disable CORE-SOUNDS-EN-GSM \
                    --disable MOH-OPSOUND-WAV menuselect.makeopts
                make -j"$(nproc)"
                rm -rf "$prefix"
                make install
            ) >"$log" 2>&1 || { echo "asterisk.sh: build failed, see $log" >&2; tail -n 30 "$log" >&2; rm -rf "$work"; exit 1; }
            touch "$prefix/.built"; rm -rf "$work"
        fi
    fi
    sounds; echo "$prefix/sbin/asterisk"; exit 0
fi

if command -v asterisk >/dev/null; then sounds; command -v asterisk; exit 0; fi
exit 3

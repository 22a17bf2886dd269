# tools/deps/common.sh — the steps every library recipe shares (sourced by tools/deps/build).
#
# A recipe (tools/deps/NAME.sh) sets SOURCE_PACKAGE and UPSTREAM_VERSION and defines build_library,
# which calls fetch_source and then compiles in $WORK with $CC, installing into $PREFIX.
# Each library has its own download and work folders, so `make -j` can build several at once;
# only $PREFIX is shared, and every library installs different files into it.

PREFIX=$ROOT/build/deps/musl
JOBS=$(nproc 2>/dev/null || echo 2)
CC=musl-gcc
export CC

# fetch_source: downloads the Debian source package once (kept in build/src/download/NAME) and
# extracts a fresh copy into $WORK, so a changed recipe never builds on a half-built tree.
# The extracted upstream version must be the one the recipe was written for. apt checked the
# download against the signed archive index; dpkg-source checks the files against the .dsc (its
# own signature cannot be checked without Debian's keyring, hence a warning in the log).
fetch_source() {
    download=$ROOT/build/src/download/$name
    WORK=$ROOT/build/src/$name
    mkdir -p "$download"
    if ! ls "$download"/*.dsc >/dev/null 2>&1; then
        if [ -z "$(apt-cache showsrc "$SOURCE_PACKAGE" 2>/dev/null)" ]; then
            echo "no Debian source package '$SOURCE_PACKAGE' known to apt:" \
                 "add a deb-src entry (tools/install-deps build does) and run apt-get update" >&2
            return 1
        fi
        (cd "$download" && apt-get source --download-only -o APT::Sandbox::User=root \
            "$SOURCE_PACKAGE")
    fi
    dsc=$(ls "$download"/*.dsc | sort -V | tail -n 1)
    case "$(basename "$dsc")" in
        "${SOURCE_PACKAGE}_${UPSTREAM_VERSION}"[-+]*|"${SOURCE_PACKAGE}_${UPSTREAM_VERSION}.dsc") ;;
        *) echo "expected $SOURCE_PACKAGE $UPSTREAM_VERSION, found $(basename "$dsc"):" \
                "update tools/deps/$name.sh" >&2; return 1 ;;
    esac
    rm -rf "$WORK"
    dpkg-source -x "$dsc" "$WORK"
}

install_files() {   # install_files DESTDIR FILE...
    dest=$1; shift
    mkdir -p "$dest"
    cp -f "$@" "$dest/"
}

#!/usr/bin/env bash
# Convert deployed images for the cluster's container runtime (mlops.images.convert runs this on the
# login node from stdin, after store.sh put the image's OCI layout at STORE/refs/KEY).
#   KEY       <stage>-<image id hex>: one image;  BASE  base-<hex>: its lower layers (all but the top one)
#   CODE      the hex of its top (code) layer's blob, STORE/blobs/sha256/CODE
# What each runtime gets (the form; mlops.images.runtime runs it):
#   apptainer, singularity  sif:     KEY.sif -> BASE.sif (built once per lower image) + KEY.code.sqfs,
#                                    run with --overlay KEY.code.sqfs:ro (needs FUSE or a setuid install)
#                           sandbox: KEY.sandbox/, a hard-linked copy of BASE.sandbox/ with the code layer
#                                    unpacked (where a SIF cannot be mounted, e.g. no /dev/fuse: asked
#                                    with a tiny probe image, STORE/probe/, before anything is built)
#   podman                  podman:  localhost/SLUG-STAGE:<hex[:20]> in the user's podman store
#   charliecloud            dir:     KEY.ch/, a hard-linked copy of BASE.ch/ + the code layer
# Usage: convert.sh apptainer|singularity STORE KEY BASE CODE GPU
#        convert.sh podman STORE KEY SLUG
#        convert.sh charliecloud STORE KEY BASE CODE GPU SLUG
#        convert.sh locate RUNTIME STORE SLUG KEY...     prints "KEY FORM" (FORM missing if not converted)
#        convert.sh version RUNTIME                      the tools' versions, one "NAME VERSION-LINE" each
# Prints "form FORM" and "built 0|1" (1: something was converted now); apptainer also "nofuse LINE"
# when it fell back to the sandbox form (LINE: what the runtime said).
set -euo pipefail

valid_key() { [[ $1 =~ ^[a-z]+-[0-9a-f]{64}$ ]] || { echo "bad image key: $1" >&2; exit 2; }; }
valid_hex() { [[ $1 =~ ^[0-9a-f]{64}$ ]] || { echo "bad digest: $1" >&2; exit 2; }; }
valid_slug() { [[ $1 =~ ^[a-z0-9][a-z0-9_.-]*$ ]] || { echo "bad project slug: $1" >&2; exit 2; }; }

podman_ref() { # SLUG KEY: the tag an image gets in podman's store (by digest: found again, not reloaded)
    local hex=${2#*-}
    echo "localhost/$1-${2%%-*}:${hex:0:20}"
}

# The code layer is plain files under /app (what `COPY . /app/` makes): no whiteouts, no `..`,
# nothing outside /app. Only such a layer is unpacked over a copy of the lower tree; GNU tar
# unlinks a file before writing it, so the lower tree's hard-linked files are never changed.
only_app() { # LAYER_BLOB
    tar -tzf "$1" | awk '!/^(\.\/)?app(\/|$)/ || /(^|\/)\.wh\./ || /(^|\/)\.\.(\/|$)/ { bad = 1 } END { exit bad }'
}

# copy_with_code BASE_TREE CODE_BLOB DEST: DEST.part = hard-linked BASE_TREE + the code layer, renamed to DEST.
# Returns 1 (and leaves nothing) when the code layer is not plain files under /app.
copy_with_code() {
    local base=$1 code=$2 dest=$3
    only_app "$code" || return 1
    [[ -d $base/app && ! -L $base/app ]] || return 1
    rm -rf "$dest.part"
    cp -al "$base" "$dest.part"
    tar -xzf "$code" -C "$dest.part" --no-same-owner
    rm -rf "$dest"
    mv "$dest.part" "$dest"
}

apptainer_sif() { # the base SIF (once per lower image) and the code layer as a squashfs
    local rt=$1 base=$store/$2.sif code=$3 sqfs=$store/$key.code.sqfs
    if [[ ! -e $base ]]; then
        rm -f "$base.part"
        # oci:DIR with no reference: the layout holds exactly one image. Apptainer >= 1.4 and
        # SingularityCE >= 4.1 read oci:<dir>[@digest] (oci:DIR:REF fails there); older versions
        # (containers/image) take oci:DIR[:REF] and pick the only manifest when REF is omitted.
        "$rt" build --disable-cache "$base.part" "oci:$store/refs/$2" >&2
        mv -f "$base.part" "$base"
        built=1
    fi
    if [[ ! -e $sqfs ]]; then
        rm -rf "$sqfs.d" "$sqfs.part"
        mkdir -p "$sqfs.d"
        # OCI whiteouts (.wh.*) are not carried into the overlay (a COPY layer has none)
        tar -xzf "$code" -C "$sqfs.d" --no-same-owner --no-same-permissions --exclude='.wh.*' --exclude='*/.wh.*'
        mksquashfs "$sqfs.d" "$sqfs.part" -noappend -no-progress -all-root >/dev/null
        mv -f "$sqfs.part" "$sqfs"
        rm -rf "$sqfs.d"
        built=1
    fi
}

apptainer_sandbox() { # the sandbox form: a tree the runtime runs without mounting any image file
    local rt=$1 base=$store/$2.sandbox code=$3 target=$store/$key.sandbox
    [[ -d $target ]] && return 0
    if [[ ! -d $base ]]; then
        rm -rf "$base.part"
        "$rt" build --disable-cache --sandbox "$base.part" "oci:$store/refs/$2" >&2
        mv "$base.part" "$base"
    fi
    if ! copy_with_code "$base" "$code" "$target"; then
        rm -rf "$target.part"
        "$rt" build --disable-cache --sandbox "$target.part" "oci:$store/refs/$key" >&2
        mv "$target.part" "$target"
    fi
    built=1
}

# Can this runtime mount a SIF with a squashfs overlay here? Unprivileged Apptainer needs a /dev/fuse
# the user can open (squashfuse); a setuid install mounts them with the kernel. Asked with a probe of
# a few KB (STORE/probe/, made once), so a store without FUSE never builds a SIF it cannot run.
fuse_probe() { # RUNTIME; prints "nofuse <what the runtime said>" and returns 1 when it cannot
    local rt=$1 p=$store/probe err
    if [[ ! -e $p/probe.sif || ! -e $p/probe.sqfs ]]; then
        rm -rf "$p"
        mkdir -p "$p/root" "$p/overlay"
        "$rt" build --disable-cache "$p/probe.sif" "$p/root" >&2
        mksquashfs "$p/overlay" "$p/probe.sqfs" -noappend -no-progress -all-root >/dev/null
    fi
    # the probe image holds no program: a runtime that could mount it says so ("no such file")
    err=$("$rt" exec --containall --overlay "$p/probe.sqfs:ro" "$p/probe.sif" /bin/true 2>&1 >/dev/null) || true
    if grep -qi fuse <<<"$err"; then
        echo "nofuse $(grep -i fuse <<<"$err" | tail -n 1 | cut -c1-300)"
        return 1
    fi
}

convert_apptainer() { # RUNTIME BASE CODE GPU
    local rt=$1 base_key=$2 code=$store/blobs/sha256/$3 gpu=$4 err
    local nv=()
    if [[ $gpu == 1 ]]; then nv=(--nv); fi
    if ! fuse_probe "$rt"; then
        rm -f "$store/$key.sif" # the sif form cannot run here: runs take the sandbox
        apptainer_sandbox "$rt" "$base_key" "$code"
        echo "form sandbox"
        return
    fi
    apptainer_sif "$rt" "$base_key" "$code"
    # the image itself, with its overlay, as the runs start it
    if ! err=$("$rt" exec --containall ${nv[@]+"${nv[@]}"} --overlay "$store/$key.code.sqfs:ro" "$store/$base_key.sif" \
        /bin/sh -c : 2>&1 >/dev/null); then
        echo "$err" >&2
        exit 1
    fi
    if [[ ! -e $store/$key.sif ]]; then
        ln -sfn "$base_key.sif" "$store/$key.sif.part"
        mv -Tf "$store/$key.sif.part" "$store/$key.sif"
        built=1
    fi
    echo "form sif"
}

podman_pull() { # KEY REF: only the layers podman's store lacks are copied
    local id
    # podman names an image pulled from oci:PATH "localhost/PATH", which must be a valid reference:
    # a workdir with upper-case letters or a dot is not, so pull by the relative path refs/KEY.
    id=$(cd "$store" && podman pull -q "oci:refs/$1:$1")
    [[ -n $id ]]
    podman tag "$id" "$2"
}

# Charliecloud: ch-run (0.31) can neither create a bind's mount point in a read-only image nor bind
# read-only; it can create one in its private /tmp (-t, a tmpfs). So the image's /project is a link
# to /tmp/project and mlops.images.runtime binds the run's directories under /tmp/project.
ch_prepare() { # DIR [GPU]
    rm -rf "$1/project"
    ln -s /tmp/project "$1/project"
    if [[ ${2:-0} == 1 ]]; then ch-fromhost --nvidia "$1"; fi
}

convert_charliecloud() { # BASE CODE GPU SLUG
    local base=$store/$1.ch code=$store/blobs/sha256/$2 gpu=$3 slug=$4 target=$store/$key.ch ref
    if [[ -L $target/project ]]; then echo "form dir"; return; fi
    if [[ ! -d $base ]]; then
        ref=$(podman_ref "$slug" "$1")
        podman image exists "$ref" || podman_pull "$1" "$ref"
        rm -rf "$base.part"
        ch-convert -i podman "$ref" "$base.part" >&2
        ch_prepare "$base.part"
        mv "$base.part" "$base"
    fi
    if copy_with_code "$base" "$code" "$target.part.tree"; then
        if [[ $gpu == 1 ]]; then ch-fromhost --nvidia "$target.part.tree"; fi
        rm -rf "$target"
        mv "$target.part.tree" "$target"
    else # not plain files under /app: convert the whole image
        ref=$(podman_ref "$slug" "$key")
        podman image exists "$ref" || podman_pull "$key" "$ref"
        rm -rf "$target.part"
        ch-convert -i podman "$ref" "$target.part" >&2
        ch_prepare "$target.part" "$gpu"
        rm -rf "$target"
        mv "$target.part" "$target"
    fi
    built=1
    echo "form dir"
}

locate() { # RUNTIME SLUG KEY...
    local rt=$1 slug=$2 key form
    valid_slug "$slug"
    shift 2
    for key in "$@"; do
        valid_key "$key"
        form=missing
        case $rt in
        apptainer | singularity)
            if [[ -e $store/$key.sif && -e $store/$key.code.sqfs ]]; then
                form=sif
            elif [[ -d $store/$key.sandbox ]]; then
                form=sandbox
            fi
            ;;
        podman) if podman image exists "$(podman_ref "$slug" "$key")"; then form=podman; fi ;;
        charliecloud) if [[ -L $store/$key.ch/project ]]; then form=dir; fi ;;
        *) echo "unknown runtime $rt" >&2 && exit 2 ;;
        esac
        echo "$key $form"
    done
}

version() { # RUNTIME: "NAME LINE" per tool the runtime needs ("NAME missing" when it is not on PATH)
    local tools tool
    case $1 in
    apptainer | singularity) tools=("$1" mksquashfs tar) ;;
    podman) tools=(podman) ;;
    charliecloud) tools=(ch-run ch-convert podman unshare tar) ;;
    *) echo "unknown runtime $1" >&2 && exit 2 ;;
    esac
    for tool in "${tools[@]}"; do
        if ! command -v "$tool" >/dev/null; then
            echo "$tool missing"
        elif [[ $tool == mksquashfs ]]; then
            echo "$tool $(mksquashfs -version 2>&1 | head -n 1)"
        else
            echo "$tool $("$tool" --version 2>&1 | head -n 1)"
        fi
    done
}

cmd=$1
shift
built=0
case $cmd in
version) version "$@" && exit 0 ;;
locate)
    store=$2
    locate "$1" "${@:3}"
    exit 0
    ;;
esac
store=$1 key=$2
valid_key "$key"
case $cmd in
apptainer | singularity)
    valid_key "$3"
    valid_hex "$4"
    convert_apptainer "$cmd" "$3" "$4" "$5"
    ;;
podman)
    valid_slug "$3"
    if podman image exists "$(podman_ref "$3" "$key")"; then
        echo "form podman"
    else
        podman_pull "$key" "$(podman_ref "$3" "$key")"
        built=1
        echo "form podman"
    fi
    ;;
charliecloud)
    valid_key "$3"
    valid_hex "$4"
    valid_slug "$6"
    convert_charliecloud "$3" "$4" "$5" "$6"
    ;;
*)
    echo "convert.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
echo "built $built"

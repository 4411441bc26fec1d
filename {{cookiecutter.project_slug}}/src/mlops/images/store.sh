#!/usr/bin/env bash
# The cluster's blob store of one project (mlops.images.store runs this on the login node):
#   STORE/blobs/sha256/<hex>        verified blobs (content-addressed, shared by all images and commits)
#   STORE/blobs/sha256/<hex>.part   an upload in progress (resumed from its size)
#   STORE/verified/<hex>            "<size> <mtime>" of the blob when its SHA-256 was last checked
#   STORE/refs/<key>/               one image as an OCI layout: index.json, oci-layout, blobs -> ../../blobs
#   STORE/deploys/<time>-<commit>   what one deploy used: "image <key>" and "blob <hex>" lines (for prune)
# Usage: store.sh lock STORE | facts STORE HEX... | commit STORE HEX... | check STORE HEX...
#        store.sh assemble STORE KEY MANIFEST_HEX MANIFEST_SIZE | record STORE NAME < lines
#        store.sh prune STORE KEEP SLUG FINAL   (STORE is <workdir>/<slug>/images; runs are in ../runs;
#                                                 FINAL: the final states, a|b|c: mlops.rundir.FINAL)
set -euo pipefail

cmd=$1 store=$2
shift 2
blobs=$store/blobs/sha256

valid_hex() { [[ $1 =~ ^[0-9a-f]{64}$ ]] || { echo "bad digest: $1" >&2; exit 2; }; }

stamp() { stat -c '%s %Y' "$blobs/$1"; }

# Verify a file against its name; on success make it the blob and record the stamp.
verify_into_place() {
    local hex=$1 file=$2 sum
    sum=$(sha256sum "$file" | awk '{print $1}')
    if [[ $sum == "$hex" ]]; then
        chmod 0400 "$file"
        [[ $file == "$blobs/$hex" ]] || mv -f "$file" "$blobs/$hex"
        stamp "$hex" >"$store/verified/$hex.tmp" && mv -f "$store/verified/$hex.tmp" "$store/verified/$hex"
        echo "$hex ok"
    else
        rm -f "$file" "$store/verified/$hex"
        echo "$hex bad"
    fi
}

case $cmd in
lock)
    # Held while our stdin stays open: a deploy that dies (or is cut off) releases it with its channel.
    mkdir -p "$blobs" "$store/verified" "$store/refs" "$store/deploys"
    exec 9>"$store/.lock"
    flock 9
    echo locked
    cat >/dev/null
    ;;
facts)
    # One line per blob: "<hex> final <size> <mtime> <stamp size> <stamp mtime>" | "<hex> part <size>" | "<hex> none"
    for hex in "$@"; do
        valid_hex "$hex"
        if [[ -f $blobs/$hex ]]; then
            echo "$hex final $(stamp "$hex") $(cat "$store/verified/$hex" 2>/dev/null || echo '- -')"
        elif [[ -f $blobs/$hex.part ]]; then
            echo "$hex part $(stat -c %s "$blobs/$hex.part")"
        else
            echo "$hex none"
        fi
    done
    ;;
commit)
    for hex in "$@"; do valid_hex "$hex"; verify_into_place "$hex" "$blobs/$hex.part"; done
    ;;
check)
    # A stored blob whose stamp does not match: hash it again; a corrupt one is removed (and re-sent).
    for hex in "$@"; do valid_hex "$hex"; verify_into_place "$hex" "$blobs/$hex"; done
    ;;
assemble)
    key=$1 hex=$2 size=$3
    valid_hex "$hex"
    [[ $key =~ ^[a-z]+-[0-9a-f]{64}$ && $size =~ ^[0-9]+$ ]] || { echo "bad image key: $key" >&2; exit 2; }
    dir=$store/refs/$key
    [[ -f $dir/index.json ]] && exit 0
    rm -rf "$dir.part" && mkdir -p "$dir.part"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$dir.part/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
        "$hex" "$size" "$key" >"$dir.part/index.json"
    ln -s ../../blobs "$dir.part/blobs"
    mv "$dir.part" "$dir"
    ;;
record)
    name=$1
    [[ $name =~ ^[0-9A-Za-z._-]+$ ]] || { echo "bad record name: $name" >&2; exit 2; }
    cat >"$store/deploys/.$name.tmp" && mv -f "$store/deploys/.$name.tmp" "$store/deploys/$name"
    # The whole-archive store of earlier versions: its archives are never read again.
    rm -f "$store"/*.tar.gz "$store"/*.tar.gz.part "$store"/*.tar.gz.sha256
    ;;
prune)
    keep=$1 slug=$2 final_states=$3
    [[ $keep =~ ^[0-9]+$ && $keep -ge 1 ]] || { echo "keep must be a number >= 1, not $keep" >&2; exit 2; }
    [[ $final_states =~ ^[a-z|-]+$ ]] || { echo "bad list of final states: $final_states" >&2; exit 2; }
    keys=$(mktemp) hexes=$(mktemp)
    trap 'rm -f "$keys" "$hexes"' EXIT
    # 1. the images of the last KEEP commits deployed (records are named <utc time>-<commit>)
    # shellcheck disable=SC2012  # record names are [0-9A-Za-z._-]
    ls -1 "$store/deploys" 2>/dev/null | sort -r | awk -F- -v n="$keep" '!seen[$2]++ && ++c <= n' |
        while read -r rec; do awk '$1 == "image" {print $2}' "$store/deploys/$rec"; done >"$keys"
    # 2. the images of every run that is not final: a run is final when each configuration of its
    #    envs/ids.txt has a state record with a terminal status (anything else may still be queued)
    for run in "$store"/../runs/*/; do
        [[ -f $run/run.json ]] || continue
        final=yes
        # envs/ids.txt was written by the params container: a link or a line that is not a config
        # id (10 hex digits) makes the run count as not final (its images are kept)
        if [[ -f $run/envs/ids.txt && ! -L $run/envs/ids.txt ]]; then
            while read -r cid; do
                [[ $cid =~ ^[0-9a-f]{10}$ ]] || { final=no; break; }
                grep -Eq "\"status\": *\"($final_states)\"" \
                    "$run/state/tasks/$cid.json" 2>/dev/null || { final=no; break; }
            done <"$run/envs/ids.txt"
        else
            final=no
        fi
        [[ $final == yes ]] && continue
        { grep -oE '"(params|data|model)": *"sha256:[0-9a-f]{64}"' "$run/run.json" || true; } |
            sed -E 's/"([a-z]+)": *"sha256:([0-9a-f]{64})"/\1-\2/' >>"$keys"
    done
    # Apptainer/Singularity: <key>.sif links to the lower image's SIF base-<hex>.sif (keep that too)
    while read -r key; do
        if [[ -L $store/$key.sif ]]; then
            target=$(readlink "$store/$key.sif")
            echo "${target%.sif}"
        fi
    done <"$keys" >>"$keys.base"
    cat "$keys.base" >>"$keys" && rm -f "$keys.base"
    sort -u -o "$keys" "$keys"
    # 3. every blob the kept images reach: manifest (from refs/<key>/index.json), config, layers
    while read -r key; do
        idx=$store/refs/$key/index.json
        [[ -f $idx ]] || continue
        m=$(grep -oE 'sha256:[0-9a-f]{64}' "$idx" | head -n 1 | cut -c8-)
        echo "$m"
        if [[ -f $blobs/$m ]]; then grep -oE 'sha256:[0-9a-f]{64}' "$blobs/$m" | cut -c8-; fi
    done <"$keys" | sort -u >"$hexes"
    freed=0 removed=0
    for path in "$blobs"/*; do
        [[ -e $path ]] || continue
        name=${path##*/}
        hex=${name%.part}
        grep -qx "$hex" "$hexes" && [[ $name == "$hex" ]] && continue
        freed=$((freed + $(stat -c %s "$path")))
        removed=$((removed + 1))
        rm -f "$path" "$store/verified/$hex"
    done
    # 4. what the runtimes made of images no longer kept
    for path in "$store"/refs/* "$store"/*.sif "$store"/*.sqfs "$store"/*.sandbox "$store"/*.ch "$store"/*.tar.gz*; do
        [[ -e $path ]] || continue
        name=${path##*/}
        key=${name%%.*}
        grep -qx "$key" "$keys" && continue
        [[ -d $path ]] && freed=$((freed + $(du -sb "$path" | awk '{print $1}'))) || freed=$((freed + $(stat -c %s "$path")))
        rm -rf "$path"
    done
    if command -v podman >/dev/null; then
        podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | { grep -E "^localhost/$slug-(params|data|model|base):" || true; } |
            while read -r ref; do
                stage=${ref#localhost/"$slug"-}
                stage=${stage%%:*}
                tag=${ref##*:}
                grep -q "^$stage-$tag" "$keys" || podman rmi -f "$ref" >/dev/null 2>&1 || true
            done
    fi
    echo "kept $(wc -l <"$keys") images, removed $removed blobs, freed $freed bytes"
    ;;
*)
    echo "store.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac

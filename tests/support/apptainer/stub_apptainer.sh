#!/bin/bash
# A stand-in `apptainer` for unit tests of images/convert.sh (tests/unit/test_images_runtime.py):
# every call is logged to calls.log beside it. Files beside it switch behaviours on:
#   nofuse  `exec` fails as unprivileged Apptainer 1.4.5 does when /dev/fuse cannot be opened
#   broken  `exec` of an image fails for another reason (the probe image still mounts)
# `build` takes the OCI source as Apptainer >= 1.4 does (internal/pkg/ociimage/sourcesink.go
# getOCIImage: oci:<dir>[@digest]) and fails with 1.4's message when <dir> is not a layout.
here=$(dirname "$0")
echo "$*" >>"$here/calls.log"
cmd=$1
shift
case $cmd in
build)
    sandbox=0
    if [ "$1" = --disable-cache ]; then shift; fi
    if [ "$1" = --sandbox ]; then sandbox=1 && shift; fi
    out=$1 dir=${2#oci:}
    dir=${dir%@*}
    if [ "$dir" = "$2" ] && [ -d "$dir" ]; then # a directory source (the probe image)
        echo sif >"$out"
        exit 0
    fi
    if [ ! -f "$dir/index.json" ]; then
        echo "FATAL:   While performing build: conveyor failed to get: stat $dir/index.json: no such file or directory" >&2
        exit 255
    fi
    if [ $sandbox = 1 ]; then
        mkdir -p "$out/app" "$out/usr"
        echo lower >"$out/app/train.py"
        echo lib >"$out/usr/lib.py"
    else
        echo sif >"$out"
    fi
    ;;
exec)
    if [ -e "$here/nofuse" ]; then
        echo "INFO:    gocryptfs not found, will not be able to use gocryptfs" >&2
        echo "FATAL:   container creation failed: image driver mount failure: image driver squashfuse_ll" \
            "instance exited with error: squashfuse_ll exited: fuse: failed to open /dev/fuse: Permission denied" >&2
        exit 255
    fi
    if [ "${*: -1}" = /bin/true ]; then # the probe image holds no program
        echo "FATAL:   stat /bin/true: no such file or directory" >&2
        exit 255
    fi
    if [ -e "$here/broken" ]; then
        echo "FATAL:   could not open image: bad magic" >&2
        exit 255
    fi
    ;;
--version) echo "apptainer version 1.4.5" ;;
esac
exit 0

#!/bin/bash
# A stand-in `mksquashfs SOURCE DEST ...` for unit tests of images/convert.sh: DEST is a small file.
if [ "$1" = -version ]; then
    echo "mksquashfs version 4.5.1"
    exit 0
fi
echo sqfs >"$2"

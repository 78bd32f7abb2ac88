#!/bin/sh
# Makes the benchmark run on hugepages, as production does: `make bench` calls it and passes
# what it prints to sheetcake-bench.
#   hugepages.sh [MIB]
# Mounts a hugetlbfs at /dev/hugepages when none is mounted and raises the kernel's pool of
# default-size hugepages until MIB MiB of them are free (default 1536: the benchmark's pools
# with one worker, about 1 GiB, plus 256 MiB for testpmd), then prints "--hugepages". When
# that cannot be done (not root, memory too fragmented), it says why on stderr and prints
# nothing, and the benchmark runs on 4 KiB pages (--no-huge), as its results then record.
# The pages stay reserved afterwards; `echo 0 > /proc/sys/vm/nr_hugepages` gives them back.
set -u
want_mib=${1:-1536}

fallback() {
  echo "hugepages.sh: $1; the benchmark runs on 4 KiB pages (--no-huge)" >&2
  exit 0
}

if ! grep -q ' hugetlbfs ' /proc/mounts; then
  mkdir -p /dev/hugepages 2>/dev/null && mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null ||
    fallback "no hugetlbfs is mounted and mounting one at /dev/hugepages failed"
fi

page_kib=$(awk '/^Hugepagesize:/ { print $2 }' /proc/meminfo)
[ -n "$page_kib" ] || fallback "this kernel has no hugepages"
free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
total=$(awk '/^HugePages_Total:/ { print $2 }' /proc/meminfo)
# Rounded up: with 1 GiB pages, 1.5 GiB is two of them.
want=$(((want_mib * 1024 + page_kib - 1) / page_kib))
if [ "$free" -lt "$want" ]; then
  echo $((total + want - free)) 2>/dev/null >/proc/sys/vm/nr_hugepages ||
    fallback "cannot raise /proc/sys/vm/nr_hugepages (run as root)"
  free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
  [ "$free" -ge "$want" ] ||
    fallback "the kernel gave only $free of the $want free ${page_kib} KiB pages asked for"
  echo "hugepages.sh: $free hugepages of ${page_kib} KiB free for the benchmark" >&2
fi
echo --hugepages

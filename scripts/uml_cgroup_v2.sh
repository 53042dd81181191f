#!/usr/bin/env bash
# The sandbox's test suites under cgroup v2, in User-mode Linux (a Linux kernel run as a process).
#
#   sudo scripts/uml_cgroup_v2.sh [PYTEST ARGS...]
#
# Most machines (systemd distributions since ~2021, most containers) have only cgroup v2, and there a
# non-root user's processes sit in a subtree systemd delegated to them (user@UID.service). This
# project's own machines and CI have cgroup v1, so this script boots a UML kernel (Debian/Ubuntu
# package user-mode-linux) with cgroup v2 alone, the host's files as its root file system, and runs the
# suites three times:
#   1. as root, in the root cgroup;
#   2. as root, in a session scope whose slice offers memory and pids only (test_sandbox_cgroup.py);
#   3. as uid $TEST_UID (default 1000), in app.slice/term.scope under a delegated
#      user.slice/user-UID.slice/user@UID.service, as systemd sets it up.
# A copy of the working tree (with a .venv of its own, built by `make .venv/.installed-dev`) goes on an
# ext4 image mounted at the same path inside, so that files keep their owners (the host's files, seen
# through hostfs, all belong to root). Default PYTEST ARGS: the sandbox suites, without their Ray
# variants (Ray does not start in UML).
#
# UML has one CPU and slow page faults (each goes through the host): a test whose time limit is a few
# seconds for work that takes a fraction of one on real hardware can fail for time alone. The closing
# summary lists the failures; docs/sandbox-cgroup-v2.md says which did at the last run, and why.
#
# Needs root (to build the image with the test user's files, and to raise vm.max_map_count, which UML
# exhausts at the default 65530 when a test fills its memory), linux.uml, mkfs.ext4 (e2fsprogs >= 1.43)
# and setpriv (util-linux). Leaves everything in a directory under /var/tmp, named at the end.
set -euo pipefail

TEST_UID=${TEST_UID:-1000}
UML_MEM=${UML_MEM:-2G}
die() { echo "uml_cgroup_v2.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (see the comment at the top)"
for tool in linux.uml mkfs.ext4 setpriv git make; do
    command -v "$tool" >/dev/null || die "$tool not found (linux.uml: apt-get install user-mode-linux)"
done
if [ $# -eq 0 ]; then
    set -- -k "not ray" tests/test_sandbox_cgroup.py tests/test_sandbox_adversarial.py tests/test_sandbox_outcomes.py \
        tests/test_scratch.py
fi

REPO=$(git rev-parse --show-toplevel)
WORK=$(mktemp -d /var/tmp/codeloop-uml.XXXXXX)
TREE=$WORK/tree
OUT=$WORK/out
mkdir -p "$TREE" "$OUT"
chmod 755 "$WORK"  # the test user's way to the tree
echo "== copying the working tree to $TREE and building its .venv"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$TREE" -xf -
make -C "$TREE" --no-print-directory .venv/.installed-dev > "$OUT/install.log" 2>&1 || die "install failed: $OUT/install.log"
BASE=$("$TREE/.venv/bin/python" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))')
mkdir -p "$TREE/home"
chown -R "$TEST_UID:$TEST_UID" "$TREE"
echo "== building the image"
SIZE_MB=$(( $(du -sm "$TREE" | cut -f1) + 1024 ))
truncate -s "${SIZE_MB}M" "$WORK/tree.img"
mkfs.ext4 -q -d "$TREE" "$WORK/tree.img"

PYTEST="timeout 2400 .venv/bin/python -m pytest -q -p no:cacheprovider --tb=short -rfE"
ARGS=$(printf '%q ' "$@")
DELEGATED=/sys/fs/cgroup/user.slice/user-$TEST_UID.slice/user@$TEST_UID.service
cat > "$WORK/init.sh" <<EOF
#!/bin/sh
# pid 1 of the UML kernel: mounts, the cgroup trees of the three runs, the runs, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount /dev/ubda "$TREE"
# The interpreter may live where the test user cannot reach it (pyenv under /root): give it a way in.
if ! setpriv --reuid $TEST_UID --regid $TEST_UID --clear-groups test -x "$BASE/bin"; then
    top=/\$(echo "$BASE" | cut -d/ -f2)
    mkdir -p /tmp/base && mount --bind "$BASE" /tmp/base
    mount -t tmpfs -o mode=755 tmpfs "\$top" && mkdir -p "$BASE" && mount --bind /tmp/base "$BASE"
fi
cd /sys/fs/cgroup
echo "+memory +pids +cpu" > cgroup.subtree_control
mkdir -p user.slice/user-0.slice/session-1.scope "$DELEGATED/app.slice/term.scope"
echo "+memory +pids +cpu" > user.slice/cgroup.subtree_control
echo "+memory +pids" > user.slice/user-0.slice/cgroup.subtree_control
echo "+memory +pids +cpu" > user.slice/user-$TEST_UID.slice/cgroup.subtree_control
echo "+memory +pids +cpu" > "$DELEGATED/cgroup.subtree_control"
chown -R $TEST_UID:$TEST_UID "$DELEGATED"
cd "$TREE"
{ uname -r; cat /sys/fs/cgroup/cgroup.controllers; } > "$OUT/kernel.txt"
echo "== 1. root, in the root cgroup" > "$OUT/1.txt"
$PYTEST $ARGS >> "$OUT/1.txt" 2>&1; echo \$? > "$OUT/1.rc"
echo "== 2. root, in user.slice/user-0.slice/session-1.scope (memory and pids offered)" > "$OUT/2.txt"
sh -c 'echo \$\$ > /sys/fs/cgroup/user.slice/user-0.slice/session-1.scope/cgroup.procs; exec $PYTEST tests/test_sandbox_cgroup.py' >> "$OUT/2.txt" 2>&1
echo \$? > "$OUT/2.rc"
echo "== 3. uid $TEST_UID, in $DELEGATED/app.slice/term.scope" > "$OUT/3.txt"
sh -c 'echo \$\$ > "$DELEGATED/app.slice/term.scope/cgroup.procs"; exec setpriv --reuid $TEST_UID --regid $TEST_UID --clear-groups env HOME=$TREE/home USER=codeloop-test $PYTEST $ARGS' >> "$OUT/3.txt" 2>&1
echo \$? > "$OUT/3.rc"
find /sys/fs/cgroup -name 'codeloop-*' > "$OUT/left-behind.txt"
echo o > /proc/sysrq-trigger
sleep 60
EOF
chmod +x "$WORK/init.sh"

MAPS=$(sysctl -n vm.max_map_count)
if [ "$MAPS" -lt 1000000 ]; then
    sysctl -qw vm.max_map_count=1000000
    trap 'sysctl -qw vm.max_map_count=$MAPS' EXIT
fi
echo "== booting UML (cgroup v2 only; ~15 minutes)"
(cd "$WORK" && timeout 7200 linux.uml mem="$UML_MEM" ubd0="$WORK/tree.img" rootfstype=hostfs rootflags=/ rw \
    init="$WORK/init.sh" con=null con0=fd:0,fd:1 > "$OUT/console.log" 2>&1) || true

status=0
echo "== kernel and controllers: $(tr '\n' ' ' < "$OUT/kernel.txt" 2>/dev/null || echo 'none: see console.log')"
for run in 1 2 3; do
    if [ -f "$OUT/$run.txt" ]; then
        head -1 "$OUT/$run.txt"
        grep -E "^(FAILED|ERROR) |^[0-9]+ (passed|failed)|passed|failed" "$OUT/$run.txt" | grep -v "^E " | tail -30
    else
        echo "run $run: no output (see $OUT/console.log)"
    fi
    [ "$(cat "$OUT/$run.rc" 2>/dev/null || echo 1)" = 0 ] || status=1
done
if [ -s "$OUT/left-behind.txt" ]; then
    echo "cgroups left behind:"; cat "$OUT/left-behind.txt"; status=1
fi
echo "== everything is in $WORK (remove it when done: the image is ${SIZE_MB} MB)"
exit $status
